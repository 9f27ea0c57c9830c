"""What a shell command line runs, as far as it can be known without running it.

The line is parsed with tree-sitter's bash grammar. Every simple command is found wherever it
stands (pipelines, lists, `{ }`, subshells, if/for/while/case bodies, functions, `!`, command and
process substitutions), wrappers that run their arguments as a command (`env`, `timeout`, `nice`,
`setsid`, `xargs`, `find -exec`, ...) are unwrapped, `bash -c STRING` and its relatives are parsed
in turn, and git's global options are dropped. What cannot be known statically is reported, not
guessed: a computed command name (`$x`, `$(echo rm)`, a glob), `eval`, `source`, aliases, traps, a
shell reading a script or its standard input (`| sh`, `bash <<< ...`), an interpreter given code
inline (`python -c`, `perl -e`, `node -e`, ...), a parse error. The guard refuses such a line when
any command rule is set: rules fail closed. The sandbox, not these rules, is the security boundary.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox", "rbash"}
# Run their string argument (after -c) as a shell command line.
_STRING_RUNNERS = {"su": "-c", "runuser": "-c", "flock": "-c", "script": "-c"}
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
    r"IFS|NODE_OPTIONS|PERL5OPT|PERL5LIB|RUBYOPT|PYTHONSTARTUP|PYTHONPATH|PYTHONHOME|GIT_.*|BASH_FUNC_.*)$")
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
    "faketime": (set(), 1), "prlimit": (set(), 0),
    "xargs": ({"-a", "--arg-file", "-d", "--delimiter", "-E", "-I", "-L", "-n", "--max-args",
               "-P", "--max-procs", "-s", "--max-chars"}, 0),
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
_DQ_ESCAPED = re.compile(r"\\([$`\"\\\n])")


def literal_word(node: Node) -> str | None:
    """The word's value when it has no expansion, substitution or glob; None otherwise."""
    kind = node.type
    if kind == "word":
        text = _text(node)
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
        return _DQ_ESCAPED.sub(r"\1", "".join(_text(child) for child in parts))
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
    words = [literal_word(name.named_children[0] if name.named_children else name)]
    words += [literal_word(argument) for argument in node.children_by_field_name("argument")]
    redirects = {child.type for child in node.children_by_field_name("redirect")}
    piped = node.parent is not None and node.parent.type == "pipeline" and node.prev_named_sibling is not None
    reads_stdin = piped or bool(redirects & {"herestring_redirect", "heredoc_redirect"}) or any(
        child.type in ("herestring_redirect", "heredoc_redirect") for child in node.children)
    _resolve(words, _text(node), analysis, depth, reads_stdin)


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
        if name in _ALWAYS_UNKNOWABLE:
            analysis.unknowable.append(_ALWAYS_UNKNOWABLE[name])
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
        _interpreter(name, words, analysis)
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


def _interpreter(name: str, words: list[str | None], analysis: Analysis) -> None:
    family = _INTERPRETER_NAME.match(name)
    key = family.group(1) if family else name
    key = {"pypy": "python", "nodejs": "node"}.get(key, key)
    inline = _INLINE_CODE.get(key)
    if inline is not None and any(word is None or inline.match(word) for word in words[1:2] + [
            w for w in words[2:] if w is None or w.startswith("-") or key == "deno"]):
        analysis.unknowable.append(f"{name} is given code inline")
    if name in ("awk", "gawk", "mawk", "nawk") and any(w is None or "system" in w or "|" in w for w in words[1:]):
        analysis.unknowable.append(f"{name}'s program may run commands")
    if name == "sed" and any(w is None or _SED_EXECUTES.search(w) for w in words[1:]):
        analysis.unknowable.append("sed's script may run commands (the e command)")
    if name == "git" and any(w is not None and w.startswith("alias.") for w in words):
        analysis.unknowable.append("git is given an alias on its command line")


def _strip_git_options(words: list[str | None]) -> list[str | None]:
    """`git --no-pager -C . -c k=v push` is `git push`."""
    if not words or words[0] != "git":
        return words
    i = 1
    while i < len(words) and words[i] is not None and words[i].startswith("-"):  # type: ignore[union-attr]
        i += 2 if words[i] in _GIT_VALUE_OPTIONS else 1
    return [words[0], *words[i:]]
