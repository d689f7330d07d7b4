"""The ``fw`` command: argument parsing and exit codes, nothing else.

Exit codes: 0 the crawl finished (failed pages are counted, not fatal); 1 it was aborted
by an error, or fetched nothing at all because every request failed; 2 bad usage or an
invalid project; 130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from framework.__about__ import __version__
from framework.config.project import Override, Project, load_project
from framework.crawl.progress import Mode
from framework.crawl.stats import Stats
from framework.errors import CrawlAborted, FwError, PluginError, ProjectErrors, UsageError
from framework.hooks.components import read_files
from framework.hooks.manager import NO_METADATA, make_plugin_manager
from framework.hooks.registry import Registry, flags
from framework.http.urls import redact_all
from framework.logs import configure_logging, ensure_stderr
from framework.output import (
    data,
    drop,
    drop_data,
    keep_stdout_for_data,
    printing_to_data,
    write_data,
)
from framework.paths import descriptor, identity, is_socket, is_stream

if TYPE_CHECKING:
    from framework.crawl.runner import Prepared

__all__ = ["main"]

OK, ABORTED, USAGE, INTERRUPTED, TERMINATED = 0, 1, 2, 130, 143
#: The exit code of a crawl stopped by a signal, by the reason it gives the crawl's end.
_STOPPED = {"interrupted": INTERRUPTED, "terminated": TERMINATED}

log = logging.getLogger("fw")


def console() -> int:
    """The ``fw`` command: ``main``, with standard output kept for fw's data."""
    ensure_stderr()
    keep_stdout_for_data()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fw`` command line and return its exit code."""
    argv = sys.argv[1:] if argv is None else argv
    ensure_stderr()
    try:
        project = _project_read_ahead(argv)
        args = _parse_argv(
            _parser(plugin_flags=_command(argv) == "run", project=project), argv, project
        )
    except (UsageError, PluginError) as exc:  # a plugin's flag is not one fw can take
        _print_errors(exc.errors if isinstance(exc, ProjectErrors) else [exc])
        return USAGE
    except KeyboardInterrupt:  # while the installed plugins load, for fw run's flags
        return INTERRUPTED
    except Exception as exc:  # a bug, fw's or a plugin's: one line, not a traceback
        return _internal(exc)
    try:
        log_file = configure_logging(
            args.log_level, args.log_format, args.log_file, quiet=getattr(args, "quiet", False)
        )
    except OSError as exc:
        print(f"Error: --log-file {args.log_file}: {_why(exc)}", file=sys.stderr)
        return USAGE
    code = _call(args.command, args)
    if log_file is not None and log_file.failure is not None and code == OK:
        return ABORTED  # the log lacks lines: a script must see it (said on stderr already)
    return code


def _call(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``command``; turn what it raises into its message and exit code."""
    try:
        return command(args)
    except (UsageError, PluginError) as exc:
        _print_errors(exc.errors if isinstance(exc, ProjectErrors) else [exc])
        return USAGE
    except CrawlAborted as exc:
        print(f"Error: {redact_all(str(exc))}", file=sys.stderr)
        return ABORTED
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:  # the reader is gone (fw plugins | head -1): stop quietly
        drop_data()
        return OK
    except Exception as exc:  # a bug in fw: one line, the traceback on request
        return _internal(exc)


def _internal(exc: Exception) -> int:
    """Say what a bug raised in one line, the traceback at debug level; exit 1."""
    log.debug("internal error", exc_info=exc)
    print(
        f"Error: internal error: {type(exc).__name__}: {redact_all(str(exc))} (rerun with "
        "--log-level debug for the traceback)",
        file=sys.stderr,
    )
    return ABORTED


#: More would scroll the first errors, often the cause of the rest, off the screen.
MAX_ERRORS_SHOWN = 20


def _print_errors(errors: Sequence[Exception]) -> None:
    """Print each error on its own ``Error:`` line, up to ``MAX_ERRORS_SHOWN``."""
    for error in errors[:MAX_ERRORS_SHOWN]:
        print(f"Error: {redact_all(str(error))}", file=sys.stderr)
    if len(errors) > MAX_ERRORS_SHOWN:
        print(f"… and {len(errors) - MAX_ERRORS_SHOWN} more errors", file=sys.stderr)


def _print(text: str) -> None:
    """Write ``text`` as fw's data, to standard output; one that cannot take it (a full
    disk) is said as such, not as a bug of fw's."""
    try:
        write_data(text + "\n")
    except BrokenPipeError:  # its reader left: _call ends quietly
        raise
    except OSError as exc:
        raise CrawlAborted(f"standard output: {exc.strerror or exc}") from None


class _Parser(argparse.ArgumentParser):
    """fw's argument parser: ``--help`` and ``--version`` are data, on standard output."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if not message or (file is not None and file is not sys.stdout):  # an error's usage
            super()._print_message(message, file)
            return
        # Not argparse's own writing: it drops what the write raises, so a full disk would
        # get no help and exit 0.
        try:
            if data() is None:  # stdout closed (fw --help >&-): the help still shows
                sys.stderr.write(message)
                sys.stderr.flush()
            else:
                write_data(message)
        except BrokenPipeError:  # its reader left (fw --help | head -1)
            drop_data()
        except OSError as exc:
            with contextlib.suppress(OSError):  # stderr may be what is full
                print(f"Error: standard output: {exc.strerror or exc}", file=sys.stderr)
            raise SystemExit(ABORTED) from None


class _Unreadable(Exception):
    """``argv`` does not parse: the real parser says why."""


class _ReadAhead(_Parser):
    """A parser that says nothing and never exits: it reads ``argv`` ahead of the real one."""

    def _print_message(self, message: str, file: Any = None) -> None:
        pass  # help asked for in any spelling (--hel, -qh): the real parser prints it

    def error(self, message: str) -> NoReturn:
        raise _Unreadable(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _Unreadable(message)


def _project_read_ahead(argv: Sequence[str]) -> Project | None:
    """Return the project ``fw run`` is given, read before the plugins load for their
    flags, so that those it disables never load (nor run their import-time code); None
    for another command, for help, or when it does not read (``fw run`` says why)."""
    if _command(argv) != "run" or {"-h", "--help", "--version"} & set(argv):
        return None
    try:
        args, _ = _parser(plugin_flags=False, cls=_ReadAhead).parse_known_args(argv)
        return load_project(args.project, args.overrides)
    except (_Unreadable, FwError, OSError):
        return None


#: The ``add_subparsers()`` object each command's parser is added to.
Commands: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _parser(
    *,
    plugin_flags: bool = True,
    project: Project | None = None,
    cls: type[_Parser] = _Parser,
) -> argparse.ArgumentParser:
    """Build the ``fw`` parser: the global options, then one sub-parser per command;
    ``fw run`` with the flags plugins add (those ``project`` does not disable), unless
    ``plugin_flags`` is false."""
    parser = cls(prog="fw", description="Crawl the web with plugins.")
    parser.add_argument("--version", action="version", version=f"fw {__version__}")
    _logging_arguments(parser, defaults=True)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    run = _run_parser(commands)
    _logging_arguments(run, defaults=False)  # first: a plugin's flag may not take these
    if plugin_flags:
        _plugin_flags(run, project)
    for add in (
        _check_parser,
        _parse_parser,
        _shell_parser,
        _new_parser,
        _status_parser,
        _plugins_parser,
    ):
        _logging_arguments(add(commands), defaults=False)
    return parser


#: The global options that take a value, which may come before the command.
_VALUED = ("--log-level", "--log-format", "--log-file")


def _command(argv: Sequence[str]) -> str | None:
    """Return the command ``argv`` names (``run``), before parsing it: only ``fw run``
    loads the installed plugins to add their flags."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _logging_arguments(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Add the logging options, which fw takes before the command and after it.

    After the command they default to ``SUPPRESS``: left out there, they keep the value
    given before the command (or its default) instead of resetting it.
    """

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("logging")
    group.add_argument(
        "--log-level",
        default=default("info"),
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="how much to log to stderr (default: info)",
    )
    group.add_argument(
        "--log-format",
        default=default("text"),
        choices=["text", "json"],
        help="json: one JSON object per log line, for log collectors",
    )
    group.add_argument(
        "--log-file",
        type=_path,
        metavar="PATH",
        default=default(None),
        help="also write the log to PATH (appending)",
    )


def _named(text: str) -> str:
    """Take a path argument, refusing an empty one: it would be the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty one")
    return text


def _path(text: str) -> Path:
    return Path(_named(text))


def _run_parser(commands: Commands) -> argparse.ArgumentParser:
    run: argparse.ArgumentParser = commands.add_parser(
        "run", help="run the crawl a project file describes"
    )
    _project_arguments(run)
    run.add_argument(
        "-o",
        "--output",
        action="append",
        default=[],
        type=_named,
        metavar="PATH",
        help="also export items to PATH; the extension picks the format "
        "(.jsonl .json .csv .db .sqlite); - streams JSON lines to stdout",
    )
    run.add_argument(
        "--stats", type=_path, metavar="PATH", help="write the final stats as JSON to PATH"
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="fetch only the requests the last run listed in its failures file, "
        "adding to its exports",
    )
    run.add_argument(
        "--record", type=_path, metavar="DIR", help="save every response to DIR, for --replay"
    )
    run.add_argument(
        "--replay",
        type=_path,
        metavar="DIR",
        help="answer every request from a recording in DIR; never touch the "
        "network (a request not recorded fails as not_recorded)",
    )
    run.add_argument(
        "--cache",
        type=_path,
        metavar="DIR",
        help="answer requests from the cache in DIR when it holds them (no network, no "
        "delay) and store what is fetched; sets cache.dir (the cache plugin)",
    )
    run.add_argument(
        "--cache-refresh",
        action="store_true",
        help="answer nothing from the cache: fetch every request and store the new answers",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress display and no info logs: warnings, errors and the summary only",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        help="discard the saved state of a persistent frontier and start over",
    )
    run.set_defaults(command=_run, flagged=[])
    return run


def _parse_argv(
    parser: argparse.ArgumentParser, argv: Sequence[str], project: Project | None = None
) -> argparse.Namespace:
    """Parse ``argv``; with an installed plugin that failed to load (``unloaded``), a flag
    fw run does not know may be another plugin's: load the plugins as the project says
    (``disable_plugins``) and parse again, or say why they do not load, as fw run would.
    A flag of a plugin the project disables is unknown, and said to be why it may be."""
    args, unknown = parser.parse_known_args(argv)
    if not unknown:
        return args
    if getattr(args, "unloaded", None) is not None:
        return _parser(project=load_project(args.project, args.overrides)).parse_args(argv)
    flagged = any(arg.startswith("--") for arg in unknown)
    if flagged and project is not None and project.disable_plugins:  # never loaded
        raise UsageError(
            f"fw run: unrecognized arguments: {' '.join(unknown)} (fw run takes no flag of "
            f"a plugin the project's disable_plugins turns off: "
            f"{', '.join(project.disable_plugins)})"
        )
    return parser.parse_args(argv)  # argparse's own error: unrecognized arguments


def _plugin_flags(run: argparse.ArgumentParser, project: Project | None = None) -> None:
    """Add the flags installed plugins register (``register_flags``), each one standing
    for a ``-s`` override, less the plugins ``project`` disables. Without a project, a
    plugin that fails to load adds none and is kept as ``unloaded`` (see ``_parse_argv``)."""
    source, disabled = (project.source, project.disable_plugins) if project else (None, ())
    try:
        pm = make_plugin_manager(source=source, disabled=disabled)
    except FwError as exc:
        if project is not None:
            raise
        run.set_defaults(unloaded=exc)
        return
    for flag in flags(pm):
        if flag.flag in run._option_string_actions:
            raise PluginError(
                f"plugin '{flag.plugin}': register_flags: {flag.flag} is an option of fw run"
            )
        run.add_argument(
            flag.flag,
            action="append_const",
            const=Override(flag.override, flag.flag),
            dest="flagged",
            help=f"{flag.help} (-s {flag.override}; plugin {flag.plugin})",
        )


def _check_parser(commands: Commands) -> argparse.ArgumentParser:
    check: argparse.ArgumentParser = commands.add_parser(
        "check", help="validate a project file without crawling"
    )
    _project_arguments(check)
    check.set_defaults(command=_check)
    return check


def _parse_parser(commands: Commands) -> argparse.ArgumentParser:
    parse: argparse.ArgumentParser = commands.add_parser(
        "parse", help="fetch one URL and print what a spider callback yields from it"
    )
    _probe_arguments(parse)
    parse.add_argument(
        "-c",
        "--callback",
        metavar="NAME",
        help="the spider method to run (default: parse), or a plugin's callback (plugin:name)",
    )
    parse.add_argument("--json", action="store_true", help="print JSON for machines")
    parse.set_defaults(command=_parse)
    return parse


def _shell_parser(commands: Commands) -> argparse.ArgumentParser:
    shell: argparse.ArgumentParser = commands.add_parser(
        "shell",
        help="fetch one URL and open an interactive session with the response "
        "(IPython when installed)",
    )
    _probe_arguments(shell)
    shell.set_defaults(command=_shell)
    return shell


def _new_parser(commands: Commands) -> argparse.ArgumentParser:
    new: argparse.ArgumentParser = commands.add_parser(
        "new", help="start a project folder or a plugin package"
    )
    new.add_argument(
        "kind",
        choices=["project", "plugin"],
        help="project: a project file, a spider and a test; plugin: a "
        "pip-installable package with a spider, an exporter and tests",
    )
    new.add_argument("name", help="lower-case letters, digits and _")
    new.add_argument(
        "-d", "--directory", type=Path, default=Path(), help="where to create it (default: here)"
    )
    new.set_defaults(command=_new)
    return new


def _status_parser(commands: Commands) -> argparse.ArgumentParser:
    status: argparse.ArgumentParser = commands.add_parser(
        "status", help="show the state of a crawl with a persistent frontier (sqlite or redis)"
    )
    _project_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON for machines")
    status.set_defaults(command=_status)
    return status


def _plugins_parser(commands: Commands) -> argparse.ArgumentParser:
    plugins: argparse.ArgumentParser = commands.add_parser("plugins", help="list installed plugins")
    shown = plugins.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print JSON for machines")
    shown.add_argument(
        "--requirements",
        action="store_true",
        help="print name==version of each distribution providing plugins, "
        "for another team's requirements file",
    )
    plugins.set_defaults(command=_plugins)
    return plugins


def _project_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", type=Path, help="the project file (YAML)")
    parser.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one project key by its dotted path, e.g. -s concurrency.per_domain=2; "
        "name a list item by its index: rules.items[0].fields.title or rules.items.0.fields.title",
    )


def _probe_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the page to fetch")
    parser.add_argument("--spider", metavar="NAME", help="the spider (default: the project's)")
    parser.add_argument(
        "-p",
        "--project",
        type=Path,
        metavar="FILE",
        help="take headers, cookies, timeout, plugins and the spider's "
        "options from this project file",
    )
    parser.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one project key (with --project)",
    )


def _run(args: argparse.Namespace) -> int:
    from framework.crawl import runner  # imports the engine and aiohttp: only when crawling

    prepared = runner.prepare(
        args.project,
        [*args.flagged, *args.overrides, *_cache_overrides(args)],
        args.output,
        retry_failed=args.retry_failed,
        fresh=args.fresh,
        record=args.record,
        replay=args.replay,
    )
    _check_cache_apart(prepared, args)
    _check_own_files(prepared, args)
    if args.stats is not None:
        _check_writable(args.stats, "--stats")
    if not prepared.components.exporters:
        log.warning(
            "%s: no exporter and no -o: the items go nowhere; add -o items.jsonl, or "
            "exporters: [{path: out/items.jsonl}] in %s",
            prepared.project.name,
            args.project,
        )
    log.info(
        "%s: plugins: %s",
        prepared.project.name,
        ", ".join(f"{i.name}-{i.version}" if i.version else i.name for i in prepared.pm.infos()),
    )
    stats = runner.run(prepared, _progress_mode(args))
    _summarise(stats, args.stats)
    if stats.aborted is not None:
        raise CrawlAborted(stats.aborted)
    if stats.reason not in _STOPPED:  # a signal's exit code says more
        _check_did_something(stats)
    return _STOPPED.get(stats.reason, OK)


def _cache_overrides(args: argparse.Namespace) -> list[Override]:
    """Turn ``--cache DIR`` and ``--cache-refresh`` into the cache plugin's section."""
    overrides = []
    if args.cache is not None:  # quoted: a path may hold what YAML reads otherwise (: # [)
        folder = json.dumps(os.path.abspath(args.cache), ensure_ascii=False)  # noqa: PTH100
        overrides.append(Override(f"cache.dir={folder}", "--cache"))
    if args.cache_refresh:
        overrides.append(Override("cache.refresh=true", "--cache-refresh"))
    return overrides


def _check_cache_apart(prepared: Prepared, args: argparse.Namespace) -> None:
    """Refuse a cache with ``--record`` or ``--replay``: a hit would be missing from the
    recording, or answer instead of the recording."""
    other = "--record" if args.record is not None else "--replay" if args.replay else None
    cache = next((m for m in prepared.components.middlewares if m.name == "cache"), None)
    folder = getattr(cache.options, "dir", None) if cache is not None else None
    if other is None or folder is None:
        return
    given = "--cache" if args.cache is not None else "the project's cache.dir"
    raise UsageError(
        f"{other} and a cache ({given}: {folder}) exclude each other: a cache folder is a "
        f"recording already (fw run --replay {folder} replays it); for {other}, turn the "
        "cache off with -s cache.dir=null"
    )


def _check_own_files(prepared: Prepared, args: argparse.Namespace) -> None:
    """Refuse ``--log-file`` or ``--stats`` on a file the crawl writes, or on one it reads
    (its project file, its plugin files): the log would be mixed into it, the stats would
    replace it."""
    taken = {**read_files(prepared.project), **prepared.files()}
    for option, path, what in (
        ("--log-file", args.log_file, "writes its log (--log-file)"),
        ("--stats", args.stats, "writes its stats (--stats)"),
    ):
        if path is None:
            continue
        file = identity(str(path), follow=False)  # a link there is replaced, not written to
        if file in taken:
            raise UsageError(
                f"{option} {path}: the crawl {taken[file]} there; give it its own file"
            )
        taken[file] = what


def _check_did_something(stats: Stats) -> None:
    """Raise ``CrawlAborted`` for a crawl that did nothing, whatever ended it (max_pages
    too): a dead server, a proxy answering 503 forever, a redirect loop, robots.txt
    forbidding every start URL, a spider that fails on every page, an export that takes no
    item. A script or a scheduler must see it.
    """
    if stats.items:
        for path, missed in stats.missed.items():
            if missed == stats.items and path != "-":  # stdout: its reader may leave at will
                raise CrawlAborted(
                    f"export {path}: none of the {stats.items} items could be written "
                    f"(item_error); see the errors above"
                )
        return
    if not stats.pages and stats.starts and stats.refused_starts.total() == stats.starts:
        raise CrawlAborted(  # a resumed crawl goes on with what it queued before: not this
            f"nothing was fetched: every start request was refused ({_refusals(stats)}); "
            "see the warnings above"
        )
    forbidden = stats.filtered["robots"]
    if forbidden and not (stats.pages or stats.errors or stats.resumed):
        raise CrawlAborted(  # a start URL listed twice, a retried page: not all starts
            f"nothing was fetched: robots.txt forbids every request the crawl made "
            f"(robots {forbidden}); fw obeys it (robots: obey)"
        )
    if not stats.errors and (not stats.retries or stats.handled):
        return  # none failed; or some were retried, and a page was handled (a 404 asked for)
    if not _answered_well(stats):  # max_pages may have cut it with every request retrying
        raise CrawlAborted(
            f"nothing was fetched: every request failed ({_kinds(stats)}){_and_robots(stats)}; "
            "check the start URLs and the network"
        )
    if stats.errors and (stats.unexportable or not stats.handled):
        raise CrawlAborted(
            f"nothing was exported: every page or item failed ({_kinds(stats)}); see the "
            "errors above"
        )


def _answered_well(stats: Stats) -> bool:
    """Whether any request got a page: a 2xx answer, or 304 (unchanged since last time)."""
    return any(200 <= status < 300 or status == 304 for status in stats.statuses)


def _kinds(stats: Stats) -> str:
    """Name the failures by kind; or, where a limit stopped the crawl while every request
    was to be retried, what was retried."""
    if stats.errors:
        return _counted(stats.errors)
    return f"{_counted(stats.retried)}; their retries were cut short"


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in counts.most_common())


def _and_robots(stats: Stats) -> str:
    """Name the requests robots.txt forbade beside those that failed: a crawl that
    fetched nothing may have met both."""
    forbidden = stats.filtered["robots"]
    return f" or robots.txt forbade it (robots {forbidden})" if forbidden else ""


def _refusals(stats: Stats) -> str:
    return ", ".join(f"{why} {n}" for why, n in stats.refused_starts.most_common())


def _progress_mode(args: argparse.Namespace) -> Mode:
    """A live panel on a terminal, a log line now and then elsewhere, nothing with -q."""
    if args.quiet or args.log_level in ("warning", "error"):
        return "off"
    return "live" if sys.stderr.isatty() and args.log_format == "text" else "log"


def _summarise(stats: Stats, path: Path | None) -> None:
    try:
        for line in stats.summary():
            print(redact_all(line), file=sys.stderr)
    except BrokenPipeError:  # stderr's reader left: nobody to tell, but --stats is written
        drop(sys.stderr)
    if path is None:
        return
    try:
        stats.save(path)
    except OSError as exc:
        raise CrawlAborted(f"--stats {path}: {_why(exc)}") from exc


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:  # what O_NOFOLLOW gives
        return "a symbolic link; fw does not write through one (remove it)"
    if exc.errno != errno.ENXIO:
        return exc.strerror or str(exc)
    # What an open gives a socket, or a FIFO nothing reads when it must not wait for one.
    return (
        "a socket"
        if exc.filename and is_socket(Path(exc.filename))
        else "a FIFO that nothing reads"
    )


def _check_writable(path: Path, option: str) -> None:
    """Fail before the crawl, not after it, if ``path`` cannot be written.

    The file is replaced at the end (see ``Stats.save``): its folder must take a new file.
    """
    if (fd := descriptor(path)) is not None:  # /dev/stdout: written through fw's own
        try:
            os.fstat(fd)
        except OSError as exc:
            raise UsageError(f"{option} {path}: cannot write it: {_why(exc)}") from exc
        return
    if is_stream(path):
        return  # a FIFO or a device: opening it to try would end a reader's stream
    if is_socket(path):  # replacing it would take a service's address away
        raise UsageError(f"{option} {path}: cannot write it: a socket")
    if path.is_dir():
        raise UsageError(f"{option} {path}: cannot write it: {os.strerror(errno.EISDIR)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        os.close(fd)
        Path(part).unlink()
    except FileExistsError as exc:  # a file where a folder of the path should be
        raise UsageError(
            f"{option} {path}: cannot write it: {exc.filename} is not a folder"
        ) from exc
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write it: {_why(exc)}") from exc


def _check(args: argparse.Namespace) -> int:
    from framework.crawl import runner

    prepared = runner.prepare(args.project, args.overrides)
    project, components = prepared.project, prepared.components
    outputs = ", ".join(f"{e.format} -> {e.path}" for e in components.exporters) or "none"
    _print(
        f"OK: {args.project}: {project.name}: spider {components.spider.name}, "
        f"{len(project.start_urls)} start URL(s){_added(prepared.added)}, exporters: {outputs}"
    )
    return OK


def _added(requests: Sequence[object]) -> str:
    """Say how many start requests plugins add (``extra_start_requests``), if any."""
    return f" and {len(requests)} start request(s) from plugins" if requests else ""


def _parse(args: argparse.Namespace) -> int:
    from framework.tools import probe

    found = probe.Probe.load(args.url, args.spider, args.project, args.overrides)
    outcome = probe.parse(found, args.url, args.callback)
    _print(probe.format_outcome(outcome, as_json=args.json))
    return ABORTED if outcome.problems else OK


def _shell(args: argparse.Namespace) -> int:
    from framework.tools import probe

    loaded = probe.Probe.load(args.url, args.spider, args.project, args.overrides)
    with printing_to_data():  # the session is the user's to read on standard output
        probe.shell(loaded, args.url)
    return OK


def _new(args: argparse.Namespace) -> int:
    from framework.tools.scaffold import new

    target = new(args.kind, args.name, args.directory)
    _print(f"wrote {target}")
    if args.kind == "project":
        _print(f"next: cd {target} && fw run project.yaml   (tests: pytest)")
    else:
        _print(f"next: pip install -e '{target}[test]' && pytest {target}")
    return OK


def _status(args: argparse.Namespace) -> int:
    from framework.tools import status

    _print(status.show(args.project, args.overrides, as_json=args.json))
    return OK


def _plugins(args: argparse.Namespace) -> int:
    pm = make_plugin_manager()
    if args.requirements:
        found = sorted(set(pm.distributions.values()), key=lambda d: d[0].lower())
        if lost := [name for name, _ in found if name.startswith(NO_METADATA)]:
            raise UsageError(
                f"fw plugins --requirements: {', '.join(lost)}: an installed plugin's "
                "distribution has lost its metadata, so no requirement names it; reinstall it"
            )
        for name, version in found:
            _print(f"{name}=={version}")
        return OK
    rows = Registry.collect(pm).describe(pm)
    if args.json:
        _print(json.dumps(rows, indent=2))
        return OK
    table = [["NAME", "DISTRIBUTION", "VERSION", "HOOKS", "PROVIDES"]]
    table += [
        [
            r["name"],
            r["distribution"] or "-",
            r["version"] or "-",
            ", ".join(r["hooks"]),
            "; ".join(f"{kind}: {', '.join(names)}" for kind, names in r["provides"].items())
            or "-",
        ]
        for r in rows
    ]
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for row in table:
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        _print(line.rstrip())
    return OK
