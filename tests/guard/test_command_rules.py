"""Deny rules fail closed: every way around `deny = ["rm", "git push", "curl"]` that the adversarial
battery found, and the variants we thought of, is refused; plain commands still run."""

from __future__ import annotations

import pytest

from tether.guard.scopes import CommandRules
from tether.guard.shell import analyze
from tether.policy.schema import CommandsPolicy

RULES = CommandRules(CommandsPolicy(deny=["rm", "git push", "curl"]))

BATTERY = [
    "$(echo rm) -rf x", "`echo rm` -rf x", "eval rm -rf x", "eval 'r''m' x", "echo cm0gLXJmIHg= | base64 -d | sh",
    "sh -ec 'rm -rf x'", "bash --norc -c 'rm x'", "echo 'rm x' | bash", "bash <<< 'rm x'",
    "shopt -s expand_aliases; alias r=rm; r x", "if true; then rm x; fi", "{ rm x; }", "for f in x; do rm $f; done",
    "! rm x", "x=rm; $x y", "nice rm x", "setsid rm x", "python -c \"import os; os.remove('x')\"",
    "python3 -c 'import shutil'", "find . -delete", "find . -name x -delete", "unlink x",
    "$(printf cu)rl http://x", "git --no-pager push", "git -c k=v push", "git -C . push",
]
OURS = [
    "r\\m x", "'rm' x", '"rm" x', "/bin/r? x", "/usr/bin/rm x", "xargs rm < list", "xargs -n 1 -P 2 rm < list",
    "find . -exec rm {} \\;", "find . -execdir rm -f {} +", "env -S 'rm x'", "env -i A=1 rm x", "command rm x",
    "exec rm x", "time rm x", "timeout 5 rm x", "timeout -s KILL 5 rm x", "sudo -u root rm x",
    "while true; do rm x; done", "case a in a) rm x;; esac", "f() { rm x; }; f", "function g { rm x; }; g",
    "echo $(rm x)", "cat <(rm x)", "export A=$(rm x)", "A=$(rm x) true", "echo ok > $(rm x)",
    "trap 'rm x' EXIT", "source s.sh", ". ./s.sh", "perl -e 'unlink q(x)'", "perl -ne 'print' f",
    "node -e 'require(\"fs\").rmSync(\"x\")'", "ruby -e 'File.delete(\"x\")'", "awk 'BEGIN{system(\"rm x\")}'",
    "sed -n '1e rm x' f", "git -c alias.p=push p", "git --git-dir=.git push", "/usr/bin/git push origin main",
    "git --work-tree . --no-pager push", "sh s.sh", "./s.sh", "scripts/run", "su -c 'rm x'",
    "flock /tmp/l -c 'rm x'", "cat <<EOF | sh\nrm x\nEOF", "true\nrm x", "true;rm x", "true&&rm x",
    "bash -c \"$(echo rm) x\"", "ionice -c 3 rm x", "stdbuf -o0 rm x", "nohup rm x &", "builtin eval rm x",
    "$'\\x72m' x", "shred -u x", "rmdir d", "git $(echo push)", "c\\url http://x", "curl$IFS http://x",
    "watch -n 1 rm x", "bash -lc 'rm x'", "(rm x)", "[ -f x ] && rm x", "[[ -f x ]] || rm x", "echo 'unterminated",
    "coproc rm x", "exec 3<>x; rm x", "sh -c 'sh -c \"rm x\"'", "python3.11 -Ic 'import os'",
    "r{m,} x", "{r,}m x", "git pu{sh,}", "BASH_ENV=x.sh bash -c ls", "export BASH_ENV=x.sh; bash -c ls",
    "PATH=./bin:$PATH ls", "export PATH=.:$PATH; ls", "env PATH=. ls", "echo rm x | xargs -I% sh -c %",
    "echo rm x | xargs -i sh -c {}", "find . -exec sh -c {} \\;", "hash -p /bin/rm ls; ls", "LD_PRELOAD=./x.so ls",
    "GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=alias.p GIT_CONFIG_VALUE_0=push git p", "parallel rm ::: x",
    "NODE_OPTIONS='--require ./x.js' node -v", "declare -x BASH_ENV=x.sh; sh -c ls",
]
# Found by a later review: a word joined across a backslash-newline, a renamed copy run by its path,
# git's dashed programs and command-running config, aliases, interpreters reading code from standard
# input, runners with their own syntax, and options with which a program runs a command.
LATER = [
    "r\\\nm x", "git pu\\\nsh", "cp /usr/bin/rm /tmp/x; /tmp/x f", "/tmp/x f", "/work/repo/del f",
    "/usr/lib/git-core/git-push origin main", "X=push git --config-env=alias.p=X p", "git --config-env alias.p=X p",
    "git -c core.sshCommand='rm x' fetch ssh://h/r", "git -c core.pager='rm x' -p log",
    "git -c diff.external=./x diff", "git config --global alias.p push; git p",
    "git config --global core.sshCommand 'rm x'", "git p", "git --exec-path=/tmp x",
    "git rebase --exec 'rm x' HEAD~1", "git rebase -x 'rm x' HEAD~1", "git bisect run rm x",
    "git submodule foreach rm x", "git difftool -x 'rm x'", "git clone -u 'rm x' a b",
    "git fetch --upload-pack='rm x' a", "git filter-branch --tree-filter 'rm x'", "git config -e",
    'python3 <<< \'import os; os.remove("x")\'', "python3 -", "echo 'import os' | python3",
    "python3 -W ignore <<< 'import os'", "python3 /dev/stdin <<< x", "perl -", "cat x.pl | perl",
    'node <<< \'require("fs")\'', "ruby - <<< x", "mapfile -C rm -c 1 < f", "readarray -tC rm a < f",
    'bind -x \'"a":rm x\'', "complete -C rm ls", "expect -c 'spawn rm x'", "tclsh <<< 'exec rm x'",
    "vim -c '!rm x' -c q", "gdb -batch -ex 'shell rm x'", "unshare rm x", "nsenter -t 1 rm x", "systemd-run rm x",
    "ssh-agent rm x", "dbus-run-session rm x", "sg users -c 'rm x'", "at now <<< 'rm x'", "batch <<< 'rm x'",
    "run-parts d", "nc -e /bin/rm h 1", "socat - EXEC:rm", "make -f /dev/stdin <<< 'a:; rm x'",
    "make --eval='a:; rm x' a", "ld.so /usr/bin/rm x", "/lib64/ld-linux-x86-64.so.2 /usr/bin/rm x", "npx rm x",
    "npx -c 'rm x'", "eatmydata rm x", "setarch x86_64 rm x", "tar -cf a.tar --to-command='rm x' d",
    "tar --checkpoint=1 --checkpoint-action=exec='rm x' -cf a.tar d", "tar -I 'rm x' -cf a.tar d",
    "rsync -e 'rm x' a b:", "zip -T -TT 'rm x' a.zip f", "sort --compress-program=./x f", "man -P 'rm x' ls",
    "git grep -O'rm x' y", "ssh -o ProxyCommand='rm x' h", "scp -S ./x a b:", "PAGER='rm x' git -p log",
    "EDITOR='rm x' git commit", "LESSOPEN='|rm x' less f", "make SHELL=./x all", "make .SHELLFLAGS='-c rm x' a",
]
ALLOWED = [
    "ls -la", "python -m pytest -q", "python3 -m pytest tests/test_x.py -k name", "git status",
    "git log --oneline -5", "git diff HEAD~1", "echo rmdir-is-just-text", "grep -rn 'rm -rf' .",
    "cat f | grep x | wc -l", "pytest tests/ && echo ok", "for f in *.py; do echo $f; done", "echo $HOME",
    "sed -i 's/a/b/' f.py", "awk '{print $1}' f", "find . -name '*.py' -type f", "python x.py", "node test.js",
    "make test", "npm test -- --watch=false", "cd src && ls", "mkdir -p out && touch out/a",
    "git diff --stat | tail -1", "find . -name '*.py' -exec grep -l x {} +", "echo {a,b}", "x=1; echo $x",
    "FOO=bar python -m pytest", "cd src && PYTHONDONTWRITEBYTECODE=1 pytest -q", "ls | xargs -n 1 wc -l",
    "git -c user.email=a@b -c user.name=x commit -m m", "git add -u", "git status -uno", "python3 s.py < in.txt",
    "python3 -W ignore x.py", "/usr/bin/python3 -m pytest -q", "git config user.email a@b",
    "git config --get user.name", "git -c color.ui=never log", "echo x | python3 s.py", "cat in | node run.js",
    "git clone --quiet a b", "git fetch origin", "git rev-parse HEAD", "ls \\\n  -la", "python3 -m pytest \\\n  -q",
    "git --version", "mapfile -t lines < f", "nc -zv localhost 80", "git rebase -i HEAD~2",
    "/opt/venv/bin/python -m pytest", "npx prettier --check .", "git config --list", "tar -czf a.tgz d",
    "tar -xzf a.tgz", "rsync -av a/ b/", "sort -u f", "git grep -n x", "man ls",
    "make -j2 CFLAGS=-O2 all",
]


@pytest.mark.parametrize("command", BATTERY + OURS + LATER)
def test_every_way_around_a_deny_rule_is_refused(command: str):
    decision = RULES.check(command)
    assert decision.verdict == "deny", command
    assert decision.rule == "commands.deny"
    assert decision.reason


@pytest.mark.parametrize("command", ALLOWED)
def test_plain_commands_still_run(command: str):
    assert RULES.check(command).verdict == "allow", RULES.check(command).reason


def test_the_reason_names_what_cannot_be_known():
    assert "computed when it runs" in RULES.check("$(echo rm) x").reason
    assert "eval runs text as code" in RULES.check("eval ls").reason
    assert "standard input" in RULES.check("echo ls | sh").reason
    assert "code inline" in RULES.check("python -c 'print(1)'").reason
    assert "'rm x' matches deny rule 'rm'" in RULES.check("bash -c 'rm x'").reason
    assert "outside the system's folders" in RULES.check("/tmp/x f").reason
    assert "git p is no git command: an alias" in RULES.check("git p").reason
    assert "config core.sshCommand" in RULES.check("git -c core.sshCommand=x fetch").reason
    assert "reads its code from its standard input" in RULES.check("python3 <<< 'print(1)'").reason
    assert "'git push origin' matches deny rule 'git push'" in RULES.check("/usr/lib/git-core/git-push origin").reason


def test_without_rules_nothing_is_parsed_or_refused():
    free = CommandRules(CommandsPolicy())
    for command in ["eval $(echo rm) x", "echo 'unterminated", "python -c 'x'"]:
        assert free.check(command).verdict == "allow"
    assert free.check("   ").verdict == "deny"


def test_allow_rules_fail_closed_too():
    rules = CommandRules(CommandsPolicy(allow=["python -m pytest", "ls", "git status"]))
    assert rules.check("ls && python -m pytest -q").verdict == "allow"
    assert rules.check("git -C . status").verdict == "allow"
    for command in ["ls $(rm x)", "ls; rm x", "eval ls", "$x", "ls | sh", "python -c 'import os'", "./ls"]:
        decision = rules.check(command)
        assert decision.verdict == "deny" and decision.rule == "commands.allow", command


def test_analysis_finds_commands_everywhere():
    found = [list(c.words) for c in analyze("if a; then b x; fi; { c; }; (d); ! e; f $(g); h <(i) | j").commands]
    names = sorted(words[0] for words in found)
    assert names == ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
