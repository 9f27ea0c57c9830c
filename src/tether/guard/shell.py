"""What a shell command line runs, as far as it can be known without running it.

The line is parsed with tree-sitter's bash grammar. Every simple command is found wherever it
stands (pipelines, lists, `{ }`, subshells, if/for/while/case bodies, functions, `!`, command and
process substitutions), wrappers that run their arguments as a command (`env`, `timeout`, `nice`,
`setsid`, `xargs`, `find -exec`, ...) are unwrapped, `bash -c STRING` and its relatives are parsed
in turn, and git's global options are dropped. What cannot be known statically is reported, not
guessed: a computed command name (`$x`, `$(echo rm)`, a glob), `eval`, `source`, aliases (git's too),
traps, a shell reading a script or its standard input (`| sh`, `bash <<< ...`), an interpreter given
code inline (`python -c`, `perl -e`, `node -e`, ...) or on its standard input, a program run by a
path that does not say what it is (`./x`, `/tmp/x`), git config or options that run a command,
runners with their own syntax (`unshare`, `at`, `gdb`, ...), a parse error. The guard refuses such a
line when any command rule is set: rules fail closed. The sandbox, not these rules, is the security boundary.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from functools import cache

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox", "rbash"}
# Run their string argument (after -c) as a shell command line.
_STRING_RUNNERS = {"su": "-c", "runuser": "-c", "flock": "-c", "script": "-c", "npx": "-c"}
# Interpreters given code on the command line, and the word that says so (flag clusters included).
_INLINE_CODE = {
    "python": re.compile(r"^-[bBdEhiIOqsSuvVxX]*c"), "perl": re.compile(r"^-\w*[eE]"),
    "ruby": re.compile(r"^-\w*e"), "node": re.compile(r"^(-\w*[ep]\w*|--eval|--print)(=|$)"),
    "bun": re.compile(r"^(-e|--eval|--print)$"), "deno": re.compile(r"^eval$"), "php": re.compile(r"^-\w*r"),
    "lua": re.compile(r"^-\w*e"), "Rscript": re.compile(r"^-e$"), "osascript": re.compile(r"^-e$"),
}
_INTERPRETER_NAME = re.compile(r"^(python|pypy|perl|ruby|node|nodejs|lua|php)(\d+(\.\d+)*)?$")
_ALWAYS_UNKNOWABLE = {
    "eval": "eval runs text as code", "source": "source runs a file's commands", ".": ". runs a file's commands",
    "alias": "an alias renames commands", "trap": "trap runs text as code later", "enable": "enable loads builtins",
    "fc": "fc re-runs history", "coproc": "coproc runs a command in the background",
    "hash": "hash -p renames commands", "parallel": "parallel builds commands from its input",
}
# Variables that change what a later command runs (a startup file, the search path, a preloaded
# library, git's config, an interpreter's options): assigning one makes the rest unknowable.
_STEERING_VARIABLES = re.compile(
    r"^(BASH_ENV|ENV|PATH|CDPATH|LD_PRELOAD|LD_LIBRARY_PATH|LD_AUDIT|PS4|PROMPT_COMMAND|SHELLOPTS|BASHOPTS|"
    r"IFS|NODE_OPTIONS|PERL5OPT|PERL5LIB|RUBYOPT|PYTHONSTARTUP|PYTHONPATH|PYTHONHOME|GIT_.*|BASH_FUNC_.*|"
    r"PAGER|MANPAGER|EDITOR|VISUAL|LESSOPEN|LESSCLOSE|BROWSER|SSH_ASKPASS|SHELL)$")
_BRACE_EXPANSION = re.compile(r"(?<!\\)\{[^{}]*(,|\.\.)[^{}]*(?<!\\)\}")
# Wrappers that run the rest of their words as a command: options that take a value, and how many
# plain words precede the command (timeout's duration, chroot's root, flock's file, taskset's mask).
_WRAPPERS: dict[str, tuple[set[str], int]] = {
    "env": ({"-u", "--unset", "-C", "--chdir"}, 0),
    "command": (set(), 0), "builtin": (set(), 0), "exec": ({"-a"}, 0), "nohup": (set(), 0),
    "time": ({"-f", "--format", "-o", "--output"}, 0),
    "nice": ({"-n", "--adjustment"}, 0), "ionice": ({"-c", "--class", "-n", "--classdata", "-p", "-P", "-u"}, 0),
    "timeout": ({"-s", "--signal", "-k", "--kill-after"}, 1), "setsid": (set(), 0), "stdbuf": ({"-i", "-o", "-e"}, 0),
    "sudo": ({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"}, 0), "doas": ({"-u", "-C"}, 0),
    "chroot": ({"--userspec", "--groups"}, 1), "flock": ({"-w", "--timeout", "-E", "--conflict-exit-code"}, 1),
    "taskset": (set(), 1), "chrt": (set(), 1), "unbuffer": (set(), 0),
    "strace": ({"-e", "-o", "-p", "-s", "-u", "-E"}, 0), "ltrace": ({"-e", "-o", "-p", "-s", "-u"}, 0),
    "watch": ({"-n", "--interval", "-q", "--equexit"}, 0), "caffeinate": (set(), 0), "catchsegv": (set(), 0),
    "faketime": (set(), 1), "prlimit": (set(), 0), "eatmydata": (set(), 0), "nocache": (set(), 0),
    "setarch": (set(), 1), "linux32": (set(), 0), "linux64": (set(), 0), "fakeroot": ({"-l", "--lib", "-s", "-i"}, 0),
    "npx": ({"-p", "--package"}, 0), "pnpx": ({"-p", "--package"}, 0), "bunx": ({"-p", "--package"}, 0),
    "uvx": ({"--from", "--with", "-p", "--python"}, 0),
    "xargs": ({"-a", "--arg-file", "-d", "--delimiter", "-E", "-I", "-L", "-n", "--max-args",
               "-P", "--max-procs", "-s", "--max-chars"}, 0),
}
# Run a command they are given in a way these rules do not follow (their own option syntax, a
# namespace, a debugger, an editor's command, a later time, a folder of scripts): always unknowable.
_OPAQUE_RUNNERS = {
    "unshare", "nsenter", "systemd-run", "firejail", "bwrap", "proot", "capsh", "runcon", "cgexec", "numactl",
    "ssh-agent", "dbus-run-session", "dbus-launch", "sg", "newgrp", "at", "batch", "run-parts", "gdb", "lldb",
    "vim", "vi", "nvim", "ex", "view", "vimdiff", "emacs", "expect", "tclsh", "wish", "torsocks", "proxychains",
    "proxychains4", "chpst", "setpriv", "ld.so", "ssh",
}
_DYNAMIC_LOADER = re.compile(r"^ld(-linux[-\w.]*)?\.so(\.\d+)*$")  # ld.so runs the program it is given
# Options with which a program runs a command it is given (nc -e, bash's mapfile -C callback, ...).
_RUNNING_OPTIONS = {
    "mapfile": ("-C",), "readarray": ("-C",), "bind": ("-x",), "complete": ("-C", "-F"), "compgen": ("-C", "-F"),
    "nc": ("-e", "-c"), "netcat": ("-e", "-c"), "ncat": ("-e", "-c", "--exec", "--sh-exec", "--lua-exec"),
    "make": ("--eval", "-E"), "man": ("-P", "--pager", "-H", "--html"), "sort": ("--compress-program",),
    "tar": ("--to-command", "--checkpoint-action", "-I", "--use-compress-program", "--info-script", "-F",
            "--new-volume-script", "--rsh-command"),
    "rsync": ("-e", "--rsh", "--rsync-path"), "zip": ("-T", "--unzip-command"), "scp": ("-S", "-o"),
    "sftp": ("-S", "-o", "-D"),
}
_SOCAT_RUNS = re.compile(r"^(exec|system):", re.IGNORECASE)
# A program's path that names what it is: the system's read-only folders in the sandbox. Elsewhere
# (/tmp, the worktree, a home) the file could be a copy of anything under another name.
_SYSTEM_PROGRAMS = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/lib32/", "/libx32/", "/opt/")
_STDIN_PATHS = {"-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"}
# Options of an interpreter that take the next word, so that the script is the first word after them.
_INTERPRETER_VALUE_OPTIONS = {
    "python": {"-W", "-X", "--check-hash-based-pycs"}, "perl": {"-I", "-M", "-m"},
    "ruby": {"-I", "-r", "-C", "-E", "-F"}, "node": {"-r", "--require", "--import", "--loader", "--input-type",
                                                  "--title", "-C", "--conditions", "--env-file"},
    "php": {"-c", "-d", "-z"}, "lua": {"-l"},
}
# git config that only shapes output or names the author: anything else given on git's command line
# (aliases, core.sshCommand, core.pager, filters, diff drivers, hooks, credential helpers, ...) can run
# a command, so it is unknowable.
_SAFE_GIT_CONFIG = re.compile(
    r"^(user\.[\w.-]+|author\.[\w.-]+|committer\.[\w.-]+|color\.[\w.-]+|advice\.[\w.-]+|i18n\.[\w.-]+|"
    r"core\.(quotepath|autocrlf|safecrlf|abbrev|filemode)|init\.defaultbranch|(commit|tag)\.gpgsign|"
    r"log\.[\w.-]+|column\.[\w.-]+|status\.[\w.-]+|merge\.conflictstyle|pull\.(rebase|ff)|gc\.auto|"
    r"safe\.directory|diff\.(noprefix|renames|mnemonicprefix|algorithm|context))$", re.IGNORECASE)
# git subcommands, and the words with which they run a command they are given ("" for any word).
_GIT_RUNS = {
    "bisect": ("run",), "submodule": ("foreach",), "filter-branch": ("",), "rebase": ("-x", "--exec"),
    "difftool": ("-x", "--extcmd"), "shell": ("-c",), "grep": ("-O", "--open-files-in-pager"), "instaweb": ("",),
    "web--browse": ("",),
    "clone": ("-u", "--upload-pack"), "fetch": ("--upload-pack",), "pull": ("--upload-pack",),
    "ls-remote": ("--upload-pack",), "push": ("--receive-pack", "--exec"), "send-pack": ("--receive-pack",),
    "archive": ("--exec",), "config": ("-e", "--edit"),
}
_GIT_VALUE_OPTIONS = {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env", "--super-prefix",
                      "--exec-path", "--list-cmds", "--attr-source"}
_FIND_EXEC = {"-exec", "-execdir", "-ok", "-okdir"}
_GLOB = re.compile(r"[*?\[]")
# GNU sed's `e` command and `s///e` flag run shell commands.
_SED_EXECUTES = re.compile(r"(^|[;\n{}])[\s\d,$!~+]*e(\s|$|;)|s(.).*?\3.*?\3[gpiImMw0-9]*e")


@dataclass(frozen=True)
class SimpleCommand:
    """One command as it will run: its words (a computed word is None) and the source text."""
    words: tuple[str | None, ...]
    text: str

    @property
    def name(self) -> str | None:
        return self.words[0] if self.words else None


@dataclass
class Analysis:
    commands: list[SimpleCommand] = field(default_factory=list)
    unknowable: list[str] = field(default_factory=list)  # why parts of the line cannot be known


@cache
def _parser() -> Parser:
    return Parser(Language(tree_sitter_bash.language()))


def analyze(command: str) -> Analysis:
    analysis = Analysis()
    _analyze_line(command, analysis, depth=0)
    return analysis


def _analyze_line(command: str, analysis: Analysis, depth: int) -> None:
    if depth > 8:
        analysis.unknowable.append("commands nested too deeply")
        return
    tree = _parser().parse(command.encode("utf-8", "surrogateescape"))
    if tree.root_node.has_error:
        analysis.unknowable.append("the command line does not parse")
    _walk(tree.root_node, analysis, depth)


def _walk(node: Node, analysis: Analysis, depth: int) -> None:
    if node.type == "variable_assignment":
        _assignment(node, analysis)
    if node.type == "command":
        _command(node, analysis, depth)
        return
    if node.type in ("heredoc_body", "heredoc_content"):
        for child in node.named_children:  # $(...) inside an unquoted heredoc runs
            _walk(child, analysis, depth)
        return
    for child in node.children:
        _walk(child, analysis, depth)


def _text(node: Node) -> str:
    return node.text.decode("utf-8", "surrogateescape") if node.text is not None else ""


_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_DQ_ESCAPED = re.compile(r"\\([$`\"\\])")
_CONTINUATION = "\\\n"  # bash drops a backslash-newline before it reads the word: r\<newline>m is rm


def literal_word(node: Node) -> str | None:
    """The word's value when it has no expansion, substitution or glob; None otherwise."""
    kind = node.type
    if kind == "word":
        text = _text(node).replace(_CONTINUATION, "")
        unescaped = _ESCAPED.sub("", text)
        return None if _GLOB.search(unescaped) or _BRACE_EXPANSION.search(text) else _ESCAPED.sub(r"\1", text)
    if kind == "number":
        return _text(node)
    if kind == "raw_string":
        return _text(node)[1:-1]
    if kind == "string":
        parts = [child for child in node.named_children]
        if any(child.type != "string_content" for child in parts):
            return None
        return _DQ_ESCAPED.sub(r"\1", "".join(_text(child) for child in parts).replace(_CONTINUATION, ""))
    if kind == "concatenation":
        if _BRACE_EXPANSION.search("".join(_text(c) if c.type == "word" else "_" for c in node.children)):
            return None  # r{m,} is `rm r`
        values = [literal_word(child) for child in node.children]
        return None if any(value is None for value in values) else "".join(v for v in values if v is not None)
    return None  # $x, ${x}, $(...), `...`, <(...), $'...', $"...", arithmetic


def _assignment(node: Node, analysis: Analysis) -> None:
    name = node.child_by_field_name("name")
    if name is not None and _STEERING_VARIABLES.match(_text(name)):
        analysis.unknowable.append(f"setting {_text(name)} changes what later commands run")


def _command(node: Node, analysis: Analysis, depth: int) -> None:
    # substitutions anywhere in the command (name, arguments, assignments, redirections) run too
    _walk_substitutions(node, analysis, depth)
    for child in node.children:
        if child.type == "variable_assignment":
            _assignment(child, analysis)
    name = node.child_by_field_name("name")
    if name is None:
        return  # only assignments or redirections
    words = _joined_words(node, [name, *node.children_by_field_name("argument")])
    redirects = {child.type for child in node.children_by_field_name("redirect")}
    piped = node.parent is not None and node.parent.type == "pipeline" and node.prev_named_sibling is not None
    reads_stdin = piped or bool(redirects & {"herestring_redirect", "heredoc_redirect"}) or any(
        child.type in ("herestring_redirect", "heredoc_redirect") for child in node.children)
    _resolve(words, _text(node), analysis, depth, reads_stdin)


def _joined_words(command: Node, nodes: list[Node]) -> list[str | None]:
    """The nodes' values as bash reads them: tree-sitter splits a word at a backslash-newline, which
    bash drops, so `r\\<newline>m` is one word, `rm`."""
    source, offset = command.text or b"", command.start_byte
    words: list[str | None] = []
    for index, node in enumerate(nodes):
        value = literal_word(node.named_children[0] if node.type == "command_name" and node.named_children else node)
        if index and source[nodes[index - 1].end_byte - offset:node.start_byte - offset] == _CONTINUATION.encode():
            left = words.pop()
            value = left + value if left is not None and value is not None else None
        words.append(value)
    return words


def _walk_substitutions(node: Node, analysis: Analysis, depth: int) -> None:
    for child in node.children:
        if child.type in ("command_substitution", "process_substitution"):
            for inner in child.children:
                _walk(inner, analysis, depth)
        else:
            _walk_substitutions(child, analysis, depth)


def _resolve(words: list[str | None], text: str, analysis: Analysis, depth: int, reads_stdin: bool) -> None:
    """Unwrap wrappers and shells around a simple command and record what finally runs."""
    while words:
        head = words[0]
        if head is None:
            analysis.unknowable.append(f"the command name in {text!r} is computed when it runs")
            analysis.commands.append(SimpleCommand(tuple(words), text))
            return
        if "/" in head and not head.startswith("/"):
            analysis.unknowable.append(f"{head} is a program from the worktree, which cannot be read beforehand")
            analysis.commands.append(SimpleCommand(tuple(words), text))
            return
        name = os.path.basename(head)
        words = [name, *words[1:]]
        if head.startswith("/") and not head.startswith(_SYSTEM_PROGRAMS):
            analysis.unknowable.append(f"{head} is a program outside the system's folders: it could be a copy of "
                                       "any program under another name")
        if name.startswith("git-") and name[4:]:
            words = ["git", name[4:], *words[1:]]  # /usr/lib/git-core/git-push is git push
            continue
        if name in _ALWAYS_UNKNOWABLE or name in _OPAQUE_RUNNERS or _DYNAMIC_LOADER.match(name):
            reason = _ALWAYS_UNKNOWABLE.get(name, f"{name} runs a command it is given in its own way")
            analysis.unknowable.append(reason)
            analysis.commands.append(SimpleCommand(tuple(words), text))
            return
        if name in _STRING_RUNNERS and _STRING_RUNNERS[name] in words:
            _shell(name, words, text, analysis, depth, reads_stdin)
            return
        if name in _WRAPPERS:
            rest = _unwrap(name, words[1:], analysis)
            if rest is None:
                analysis.commands.append(SimpleCommand(tuple(words), text))
                return
            words = rest
            continue
        if name in SHELLS or name in _STRING_RUNNERS:  # su or script without -c: a login shell
            _shell(name, words, text, analysis, depth, reads_stdin)
            return
        if name == "find":
            _find(words, text, analysis, depth)
            return
        _interpreter(name, words, analysis, reads_stdin)
        if name == "git":
            _git(words, analysis)
        analysis.commands.append(SimpleCommand(tuple(_strip_git_options(words)), text))
        return


def _unwrap(name: str, args: list[str | None], analysis: Analysis) -> list[str | None] | None:
    value_options, positionals = _WRAPPERS[name]
    i = 0
    while i < len(args):
        word = args[i]
        if word is None:
            analysis.unknowable.append(f"{name} is given a computed argument")
            return None
        if name == "env" and (word in ("-S", "--split-string") or word.startswith("--split-string=")):
            analysis.unknowable.append("env -S splits a string into a command")
            return None
        if word == "--":
            i += 1
            break
        if word.startswith("-") and len(word) > 1:
            i += 2 if word in value_options else 1
            continue
        if name == "env" and "=" in word:
            if _STEERING_VARIABLES.match(word.split("=", 1)[0]):
                analysis.unknowable.append(f"setting {word.split('=', 1)[0]} changes what the command runs")
                return None
            i += 1
            continue
        break
    rest = args[i + positionals:] if name != "taskset" or "-p" not in args else []
    replaced = _replacement(name, args[:i])
    if replaced is not None:  # xargs -I R: every word holding R is filled in from the input
        rest = [None if word is not None and replaced in word else word for word in rest]
    return rest or None


def _replacement(name: str, options: list[str | None]) -> str | None:
    if name != "xargs":
        return None
    for index, option in enumerate(options):
        if option in ("-I", "--replace") and index + 1 < len(options):
            return options[index + 1]
        if option is not None and option.startswith("-I") and len(option) > 2:
            return option[2:]
        if option is not None and (option == "-i" or option.startswith("--replace=")):
            return option.partition("=")[2] or "{}"
    return None


def _shell(name: str, words: list[str | None], text: str, analysis: Analysis, depth: int,
           reads_stdin: bool) -> None:
    flag = _STRING_RUNNERS.get(name, "-c")
    for i, word in enumerate(words[1:], start=1):
        if word is None:
            break
        if word == flag or (flag == "-c" and re.fullmatch(r"-[a-zA-Z]*c[a-zA-Z]*", word)):
            script = words[i + 1] if i + 1 < len(words) else None
            if script is None:
                analysis.unknowable.append(f"{name} runs a computed string")
            else:
                _analyze_line(script, analysis, depth + 1)
            return
        if not word.startswith("-") and name in SHELLS:
            break  # a script file
    if name in SHELLS:
        source = "its standard input" if reads_stdin or len(words) == 1 else "a script file"
        analysis.unknowable.append(f"{name} runs {source}, which cannot be read beforehand")
    analysis.commands.append(SimpleCommand(tuple(words), text))


def _find(words: list[str | None], text: str, analysis: Analysis, depth: int) -> None:
    analysis.commands.append(SimpleCommand(tuple(words), text))
    i = 1
    while i < len(words):
        if words[i] in _FIND_EXEC:
            end = next((j for j in range(i + 1, len(words)) if words[j] in (";", "+")), len(words))
            filled = [None if word is not None and "{}" in word else word for word in words[i + 1:end]]
            _resolve(filled, text, analysis, depth, reads_stdin=False)
            i = end
        i += 1


def _interpreter(name: str, words: list[str | None], analysis: Analysis, reads_stdin: bool) -> None:
    family = _INTERPRETER_NAME.match(name)
    key = family.group(1) if family else name
    key = {"pypy": "python", "nodejs": "node"}.get(key, key)
    inline = _INLINE_CODE.get(key)
    if inline is not None and any(word is None or inline.match(word) for word in words[1:2] + [
            w for w in words[2:] if w is None or w.startswith("-") or key == "deno"]):
        analysis.unknowable.append(f"{name} is given code inline")
    if family and _reads_code_from_stdin(words, _INTERPRETER_VALUE_OPTIONS.get(key, set()), reads_stdin):
        analysis.unknowable.append(f"{name} reads its code from its standard input, which cannot be read beforehand")
    if name in ("awk", "gawk", "mawk", "nawk") and any(w is None or "system" in w or "|" in w for w in words[1:]):
        analysis.unknowable.append(f"{name}'s program may run commands")
    if name == "sed" and any(w is None or _SED_EXECUTES.search(w) for w in words[1:]):
        analysis.unknowable.append("sed's script may run commands (the e command)")
    if any(_runs_with(word, option) for option in _RUNNING_OPTIONS.get(name, ()) for word in words[1:]) or (
            name == "make" and any(word is None or word in _STDIN_PATHS or word.startswith(("SHELL=", ".SHELLFLAGS="))
                                   for word in words[1:])) or (
            name == "socat" and any(word is None or _SOCAT_RUNS.match(word) for word in words[1:])):
        analysis.unknowable.append(f"{name} is told to run a command")


def _reads_code_from_stdin(words: list[str | None], value_options: set[str], reads_stdin: bool) -> bool:
    """Whether an interpreter's script is its standard input: no script word (`python3 <<< code`,
    `... | perl`), or `-` or /dev/stdin as the script. `-m module` names a script."""
    i = 1
    while i < len(words):
        word = words[i]
        if word is None or word in _STDIN_PATHS:
            return True
        if word == "-m" or not word.startswith("-"):
            return False
        i += 2 if word in value_options else 1
    return reads_stdin


def _runs_with(word: str | None, option: str) -> bool:
    if word is None:
        return False
    if option.startswith("--"):
        return word == option or word.startswith(option + "=")
    return word.startswith("-") and not word.startswith("--") and option[1] in word[1:]  # -C cb, -tC cb, -Ccb


def _given(word: str, trigger: str) -> bool:
    return _runs_with(word, trigger) if trigger.startswith("-") else word == trigger


def _git(words: list[str | None], analysis: Analysis) -> None:
    """What git's command line says beyond its subcommand: config that can run a command, another
    exec path, a subcommand that runs what it is given, an alias."""
    i = 1
    while i < len(words) and words[i] is not None and words[i].startswith("-"):  # type: ignore[union-attr]
        option = words[i] or ""
        value = words[i + 1] if option in ("-c", "--config-env") and i + 1 < len(words) else (
            option.partition("=")[2] if option.startswith("--config-env=") else "")
        if option in ("-c", "--config-env") or option.startswith("--config-env="):
            key = value.partition("=")[0] if value is not None else None
            if key is None or not _SAFE_GIT_CONFIG.match(key):
                analysis.unknowable.append(f"git is given config {key or '<computed>'} on its command line, "
                                           "which can run a command")
        if option.startswith("--exec-path="):
            analysis.unknowable.append("git is told to find its commands elsewhere (--exec-path)")
        i += 2 if option in _GIT_VALUE_OPTIONS else 1
    rest = words[i:]
    if not rest or rest[0] is None:
        return
    subcommand, arguments = rest[0], rest[1:]
    known = _git_commands()
    if known and subcommand not in known:
        analysis.unknowable.append(f"git {subcommand} is no git command: an alias, which can run anything")
    triggers = _GIT_RUNS.get(subcommand, ())
    if triggers and ("" in triggers or any(word is None or any(_given(word, trigger) for trigger in triggers)
                                           for word in arguments)):
        analysis.unknowable.append(f"git {subcommand} is told to run a command")
    if subcommand == "config":
        _git_config(arguments, analysis)


def _git_config(arguments: list[str | None], analysis: Analysis) -> None:
    """`git config KEY VALUE` (or `set`, `--add`) with a key that can run a command makes later git
    commands unknowable: refused now."""
    positional = [word for word in arguments if word is None or not word.startswith("-")]
    if positional and positional[0] in ("set", "get", "list", "unset", "rename-section", "remove-section"):
        verb, positional = positional[0], positional[1:]
    else:
        verb = "set" if len(positional) >= 2 or any(w in ("--add", "--replace-all") for w in arguments) else "get"
    if verb == "set" and positional and (positional[0] is None or not _SAFE_GIT_CONFIG.match(positional[0])):
        analysis.unknowable.append(f"git config sets {positional[0] or '<computed>'}, which can run a command later")


@cache
def _git_commands() -> frozenset[str]:
    """git's own commands (where git is installed); any other subcommand is an alias."""
    try:
        listed = subprocess.run(["git", "--list-cmds=main,others"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(listed.stdout.split()) | {"help", "version"} if listed.returncode == 0 else frozenset()


def _strip_git_options(words: list[str | None]) -> list[str | None]:
    """`git --no-pager -C . -c k=v push` is `git push`."""
    if not words or words[0] != "git":
        return words
    i = 1
    while i < len(words) and words[i] is not None and words[i].startswith("-"):  # type: ignore[union-attr]
        i += 2 if words[i] in _GIT_VALUE_OPTIONS else 1
    return [words[0], *words[i:]]
