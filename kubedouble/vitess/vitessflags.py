"""What a Vitess binary of a given major does with the flags vitess-operator passes it.

vitess-operator never checks the Vitess version of the images it is given (releases.py); a
mismatch shows only when the binary parses its command line. The flags the simulated
operator passes whose meaning changed across Vitess majors, as the Vitess sources and the
per-version flag references say (vitessio/website content/en/docs/<major>/reference/programs/,
majors 14-22; vitessio/vitess changelog/<major>.0/*/summary.md for 23 and 24):
  - vttablet ``--builtinbackup-incremental-restore-path``: exists from Vitess 19;
  - vtctld ``--mysql_server_version``: exists from Vitess 19 (vtgate, vttablet and mysqlctld
    have it in every major simulated);
  - vttablet ``--queryserver-config-query-timeout``: a float of seconds up to 17
    (``tabletenv.SecondsVar``), 18 takes a duration or, with a deprecation warning, seconds
    (``flagutil.DeprecatedFloat64Seconds``), 19 and later a Go duration only (vitess#14733
    "cleanup deprecated flag types in tabletenv"); majors below 16 are taken as 16 (their
    references list the timeout as an int: ``30s`` fails there too);
  - underscore spellings (``--grpc_port``): accepted through 24 (23 and 24 normalise them to
    dashes); the 23.0.0 release notes announce their removal in 25, so a major above 24 is
    taken to know only the dash spelling (an announcement, not a release: revisit with v25).
Flags a user adds (``extraFlags``) are not checked: the double does not know every flag of
every major. How parsing fails: up to 17 the binaries parse with pflag's ExitOnError
(servenv.ParseFlags): the error, pflag's usage header, the error again, exit 2. From 18 they
are cobra commands whose main does ``log.Exit(err)``: ``Error: <err>``, cobra's usage, a glog
FATAL line, exit 1. SIMPLIFIED: the usage text's flag list is left out; the FATAL line's
file:line is a stand-in. Pure: no store, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

NEWEST_KNOWN = 24   # the newest Vitess major whose flags are modelled; unversioned images are taken as it
OLDEST_COBRA = 18   # the first major whose binaries are cobra commands

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)?")


def image_version(image: str) -> tuple[int, int, int] | None:
    """(24, 0, 0) for ``vitess/lite:v24.0.0-mysql80`` (behind any registry); None without a version tag."""
    ref = image.split("@", 1)[0]
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return None
    m = _VERSION.match(tag)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


@dataclass
class Parsed:
    """The outcome of parsing a command line: warnings logged, or the error that stops the binary."""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def _go_duration_error(value: str) -> str | None:
    """time.ParseDuration's error for ``value``, or None when it parses."""
    s = value
    if s[:1] in "+-":
        s = s[1:]
    if s == "0":
        return None
    if not s:
        return f"time: invalid duration {_quote(value)}"
    pos = 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or m.end() == pos:
            return f"time: invalid duration {_quote(value)}"
        if m.group(2) is None:
            rest = s[m.end():]
            unit = re.match(r"[^0-9.]*", rest).group(0)
            if not unit:
                return f"time: missing unit in duration {_quote(value)}"
            return f"time: unknown unit {_quote(unit)} in duration {_quote(value)}"
        pos = m.end()
    return None


def _float_error(value: str) -> str | None:
    """strconv.ParseFloat(value, 64)'s error, or None (Go takes no spaces or "_" in decimals)."""
    err = f"strconv.ParseFloat: parsing {_quote(value)}: invalid syntax"
    if not value or value.strip() != value or "_" in value:
        return err
    try:
        float(value)
    except ValueError:
        if not value.lstrip("+-").lower().startswith("0x"):
            return err
        try:
            float.fromhex(value)     # Go accepts hexadecimal floats ("0x1p4")
        except ValueError:
            return err
    return None


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _invalid(value: str, flag: str, err: str) -> str:
    return f"invalid argument {_quote(value)} for {_quote('--' + flag)} flag: {err}"


def _split(arg: str) -> tuple[str, str | None]:
    body = arg[2:] if arg.startswith("--") else arg[1:]
    name, sep, value = body.partition("=")
    return name, (value if sep else None)


def parse(program: str, major: int, args: list[str], checked: set[str]) -> Parsed:
    """Parse ``args`` (``--name=value`` each) as ``program`` of Vitess ``major`` would, looking
    only at the flags named in ``checked`` (the ones the operator passes), in command-line
    order: the first failure stops parsing, as pflag's does."""
    out = Parsed()
    for arg in args:
        if not arg.startswith("-"):
            continue
        name, value = _split(arg)
        if name not in checked:
            continue
        if major > NEWEST_KNOWN and "_" in name:
            out.error = f"unknown flag: --{name}"
            return out
        if program == "vttablet" and name == "builtinbackup-incremental-restore-path" and major < 19:
            out.error = f"unknown flag: --{name}"
            return out
        if program == "vtctld" and name == "mysql_server_version" and major < 19:
            out.error = f"unknown flag: --{name}"
            return out
        if program == "vttablet" and name == "queryserver-config-query-timeout" and value is not None:
            if major <= 17:
                err = _float_error(value)
                if err:
                    out.error = _invalid(value, name, err)
                    return out
            elif major == 18:
                derr = _go_duration_error(value)
                if derr:
                    ferr = _float_error(value)
                    out.warnings.append(f"failed to parse {name} as duration (err: {derr}); falling back to parsing "
                                        f"to 30s as seconds. this is deprecated and will be removed in a future release")
                    if ferr:
                        out.error = _invalid(value, name, ferr)
                        return out
            else:
                err = _go_duration_error(value)
                if err:
                    out.error = _invalid(value, name, err)
                    return out
    return out


def _glog(level: str, source: str, msg: str) -> str:
    t = datetime.now(timezone.utc)
    return f"{level}{t:%m%d %H:%M:%S}.{t.microsecond:06d}       1 {source}] {msg}"


def failure_lines(program: str, command: str, major: int, error: str) -> tuple[list[str], int]:
    """The log lines and exit code of a binary whose command line does not parse."""
    if major < OLDEST_COBRA:
        return [error, f"Usage of {command}:", error], 2
    return [f"Error: {error}", "Usage:", f"  {program} [flags]", "", "Flags:",
            _glog("F", f"{program}.go:30", error)], 1


def warning_lines(program: str, warnings: list[str]) -> list[str]:
    return [_glog("W", "flagutil/deprecated_float64_seconds.go:46", w) for w in warnings]
