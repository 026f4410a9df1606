"""A real, throwaway PostgreSQL server for tests and benchmarks (standard library only).

Library use (import by path: `scripts/` is not a package):

    srv = start()                  # or: with start() as srv: ...
    srv.url                        # postgresql://cvml:PASSWORD@127.0.0.1:PORT/cvml_test
    srv.restart()                  # down and up again: same data, port and password (fault tests)
    srv.stop_server(); ...; srv.start_server()   # the same, kept down as long as a test needs
    srv.stop()                     # pg_ctl stop -m fast, then the data directory is removed

CLI:

    python scripts/pg_server.py run -- CMD ARGS...   # CMD runs with CVML_TEST_PG_URL set
    python scripts/pg_server.py check                # are the server binaries here?

The server listens on 127.0.0.1 only, on a free port, with password (SCRAM) authentication
for the superuser `cvml`, and durability off (fsync, synchronous_commit, full_page_writes):
fast, and nothing in it survives `stop()`.

PostgreSQL refuses to run as root; as root the server binaries run as the `postgres` user
(`runuser -u postgres --`) and the data directory is created where that user can reach it.
As a normal user they run directly as that user.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:  # typing.Self is 3.11+; the script itself runs on older Pythons too
    from typing import Self

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "cvml"
DATABASE = "cvml_test"
RUN_AS = "postgres"  # the OS user the server runs as when we are root
URL_ENV = "CVML_TEST_PG_URL"
START_TIMEOUT_S = 60
UNIX_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, with the trailing NUL


class PgServerError(RuntimeError):
    """The throwaway server could not be found, installed, set up or started."""


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """(15,) for /usr/lib/postgresql/15/bin; sorts 9.6 < 10 < 15 < 16."""
    return tuple(int(p) for p in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def _complete(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in SERVER_BINARIES)


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: from PATH (symlinks resolved),
    else the newest /usr/lib/postgresql/*/bin; None when there is none."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        for candidate in (Path(on_path).resolve().parent, Path(on_path).parent):
            if _complete(candidate):
                return candidate
    dirs = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if _complete(Path(d))]
    return max(dirs, key=_version_key) if dirs else None


def server_version(bin_dir: Path) -> str:
    """'15.18' from `pg_ctl --version` (allowed as root)."""
    out = subprocess.run([str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+(?:\.\d+)*)", out)
    return m.group(1) if m else "0"


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "postgresql"]
    print("pg_server: PostgreSQL not found; running: " + " ".join(cmd), file=sys.stderr)
    if subprocess.run(cmd, check=False, env=env, stdout=subprocess.DEVNULL).returncode == 0:
        return
    print("pg_server: install failed; running apt-get update and retrying", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-q"], check=False, env=env, stdout=subprocess.DEVNULL)
    res = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise PgServerError(f"`{' '.join(cmd)}` failed (exit {res.returncode}):\n{res.stderr[-2000:]}")


def ensure_binaries(install: bool = True) -> Path:
    """find_bin_dir(), installing Debian's `postgresql` package first when missing and root."""
    bin_dir = find_bin_dir()
    if bin_dir is not None:
        return bin_dir
    if install and _is_root() and shutil.which("apt-get"):
        _apt_install()
        bin_dir = find_bin_dir()
        if bin_dir is not None:
            return bin_dir
    raise PgServerError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or under "
        "/usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `sudo apt-get install postgresql`; "
        "macOS: `brew install postgresql`) or put their bin directory on PATH."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A running throwaway server. `stop()` is idempotent and also runs at interpreter exit."""

    def __init__(self, *, bin_dir: Path, base: Path, data_dir: Path, log_file: Path, port: int,
                 password: str, run_prefix: list[str], version: str, options: str = "") -> None:
        self.bin_dir = bin_dir
        self.base = base            # the temporary directory holding everything; removed by stop()
        self.data_dir = data_dir
        self.log_file = log_file
        self.port = port
        self.host = "127.0.0.1"
        self.user = SUPERUSER
        self.password = password
        self.dbname = DATABASE
        self.version = version
        self._run_prefix = run_prefix
        self._options = options     # the postgres options it was started with (`pg_ctl -o`)
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._stopped = False
        atexit.register(self._atexit_stop)

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def running(self) -> bool:
        """Whether the server process is up (false between `stop_server()` and `start_server()`)."""
        return not self._stopped and (self.data_dir / "postmaster.pid").exists()

    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [*self._run_prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        return subprocess.run(cmd, check=False, cwd=self.base, capture_output=True, text=True, timeout=timeout)

    def stop_server(self) -> None:
        """Shut the server down (pg_ctl stop -m fast: clients are disconnected) and keep its
        data: `start_server()` brings it back on the same port, with the same password and data.
        A no-op when it is down already.

        Raises:
            PgServerError: the server was removed by `stop()`, or did not stop.
        """
        with self._lock:
            if self._stopped:
                raise PgServerError(f"the server on 127.0.0.1:{self.port} was removed by stop()")
            if not (self.data_dir / "postmaster.pid").exists():
                return
            try:
                res = self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", timeout=45)
            except subprocess.TimeoutExpired:
                raise PgServerError(f"pg_ctl stop timed out on 127.0.0.1:{self.port}{_log_tail(self.log_file)}") from None
            if res.returncode != 0:
                raise PgServerError(f"pg_ctl stop failed (exit {res.returncode}):\n"
                                    f"{(res.stdout + res.stderr)[-3000:]}{_log_tail(self.log_file)}")

    def start_server(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server that `stop_server()` shut down, on the same data directory and port,
        and wait until it accepts connections. A no-op when it is running.

        Raises:
            PgServerError: the server was removed by `stop()`, or did not come up in time
                (e.g. its port was taken meanwhile).
        """
        with self._lock:
            if self._stopped:
                raise PgServerError(f"the server on 127.0.0.1:{self.port} was removed by stop()")
            if (self.data_dir / "postmaster.pid").exists():
                return
            try:
                res = self._pg_ctl("-l", str(self.log_file), "-w", "-t", str(int(timeout_s)), "-o", self._options,
                                   "start", timeout=timeout_s + 15)
            except subprocess.TimeoutExpired:
                raise PgServerError(f"pg_ctl start timed out on 127.0.0.1:{self.port}{_log_tail(self.log_file)}") from None
            if res.returncode != 0:
                raise PgServerError(f"pg_ctl start failed (exit {res.returncode}):\n"
                                    f"{(res.stdout + res.stderr)[-3000:]}{_log_tail(self.log_file)}")
            _wait_accepting(self.bin_dir, self.port, self.password, timeout_s)

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """`stop_server()` then `start_server()`: a database restart, as clients see one."""
        self.stop_server()
        self.start_server(timeout_s)

    def stop(self) -> None:
        """pg_ctl stop -m fast (immediate if that fails), then remove the data directory."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                try:
                    res = self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30", timeout=45)
                    failed = res.returncode != 0
                except subprocess.TimeoutExpired:
                    failed = True
                if failed and (self.data_dir / "postmaster.pid").exists():
                    try:
                        self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "15", timeout=30)
                    except subprocess.TimeoutExpired:
                        pass
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            with contextlib.suppress(Exception):  # the interpreter may be shutting down
                atexit.unregister(self._atexit_stop)

    def _atexit_stop(self) -> None:
        # A forked child (multiprocessing) inherits the hook; only the process that started it stops it.
        if os.getpid() == self._owner_pid:
            self.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self.running else "down"
        return f"<PgServer {self.version} 127.0.0.1:{self.port} {state} data={self.data_dir}>"


def _postgres_can_use(path: Path) -> bool:
    """Whether the `postgres` user can traverse and write `path` (every ancestor needs +x)."""
    res = subprocess.run(["runuser", "-u", RUN_AS, "--", "test", "-x", str(path), "-a", "-w", str(path)],
                         check=False, capture_output=True)
    return res.returncode == 0


def _make_base(base_dir: Path | None, as_root: bool) -> Path:
    if not as_root:
        if base_dir is not None:
            Path(base_dir).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="cvml-pg-", dir=base_dir))
    import pwd

    try:
        pw = pwd.getpwnam(RUN_AS)
    except KeyError:
        raise PgServerError(
            f"running as root, but there is no `{RUN_AS}` OS user to run the server as "
            f"(PostgreSQL refuses to run as root). Create it (`useradd -r {RUN_AS}`) or run as a normal user."
        ) from None
    if not shutil.which("runuser"):
        raise PgServerError("running as root, but `runuser` (util-linux) is missing to drop to the postgres user")
    parent: Path | None = None
    if base_dir is not None:
        Path(base_dir).mkdir(parents=True, exist_ok=True)
        if _postgres_can_use(Path(base_dir)):
            parent = Path(base_dir)
        else:
            # mkdtemp's own dir is chowned below; only the parent needs to be reachable.
            probe = Path(tempfile.mkdtemp(prefix="cvml-pg-probe-", dir=base_dir))
            try:
                os.chown(probe, pw.pw_uid, pw.pw_gid)
                if _postgres_can_use(probe):
                    parent = Path(base_dir)
            finally:
                shutil.rmtree(probe, ignore_errors=True)
            if parent is None:
                print(f"pg_server: {base_dir} is not reachable by the `{RUN_AS}` user; using /tmp instead",
                      file=sys.stderr)
    base = Path(tempfile.mkdtemp(prefix="cvml-pg-", dir=parent or "/tmp"))  # mode 0700
    try:
        os.chown(base, pw.pw_uid, pw.pw_gid)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return base


def start(base_dir: Path | None = None) -> PgServer:
    """Initialise and start a throwaway server with a `cvml_test` database; see the module doc."""
    bin_dir = ensure_binaries()
    version = server_version(bin_dir)
    major = int(version.split(".")[0])
    as_root = _is_root()
    run_prefix = ["runuser", "-u", RUN_AS, "--"] if as_root else []
    password = secrets.token_urlsafe(24)
    srv: PgServer | None = None
    base = _make_base(base_dir, as_root)
    data_dir = base / "data"
    log_file = base / "server.log"

    def run(cmd: list[str], what: str, timeout: float = START_TIMEOUT_S, as_server: bool = True) -> None:
        full = [*(run_prefix if as_server else []), *cmd]
        env = {**os.environ, "PGPASSWORD": password, "LC_ALL": "C"}
        try:
            res = subprocess.run(full, check=False, cwd=base, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PgServerError(f"{what} timed out after {timeout}s: {' '.join(full)}{_log_tail(log_file)}") from None
        if res.returncode != 0:
            raise PgServerError(f"{what} failed (exit {res.returncode}): {' '.join(full)}\n"
                                f"{(res.stdout + res.stderr)[-3000:]}{_log_tail(log_file)}")

    try:
        pwfile = base / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        if as_root:
            import pwd

            pw = pwd.getpwnam(RUN_AS)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        auth = "scram-sha-256" if major >= 10 else "md5"
        initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), f"--username={SUPERUSER}", f"--pwfile={pwfile}",
                  f"--auth={auth}", "-E", "UTF8", "--locale=C", "--no-sync"]
        if major >= 14:
            initdb.append("--no-instructions")
        run(initdb, "initdb")
        pwfile.unlink()

        # A long data dir path cannot hold the Unix socket; TCP only then.
        socket_dir = str(data_dir) if len(str(data_dir)) + len("/.s.PGSQL.65535") <= UNIX_SOCKET_PATH_MAX else ""
        for attempt in range(3):  # the free port can be taken between picking it and binding it
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='{socket_dir}' "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            srv = PgServer(bin_dir=bin_dir, base=base, data_dir=data_dir, log_file=log_file, port=port,
                           password=password, run_prefix=run_prefix, version=version, options=opts)
            try:
                run([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-w",
                     "-t", str(START_TIMEOUT_S), "-o", opts, "start"], "pg_ctl start", timeout=START_TIMEOUT_S + 15)
                break
            except PgServerError:
                bind_clash = "Address already in use" in _log_tail(log_file)
                if not bind_clash or attempt == 2 or (data_dir / "postmaster.pid").exists():
                    raise
                atexit.unregister(srv._atexit_stop)
        _wait_accepting(bin_dir, port, password, START_TIMEOUT_S)
        run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE],
            "createdb", as_server=False)
        return srv
    except BaseException:
        if srv is not None:
            srv.stop()  # also removes `base`
        else:
            shutil.rmtree(base, ignore_errors=True)
        raise


def _wait_accepting(bin_dir: Path, port: int, password: str, timeout_s: float) -> None:
    """pg_ctl -w already waits; this confirms a TCP client gets in (pg_isready when present)."""
    deadline = time.monotonic() + timeout_s
    isready = bin_dir / "pg_isready"
    while True:
        if isready.exists():
            ok = subprocess.run([str(isready), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER,
                                 "-d", "postgres"], check=False, capture_output=True).returncode == 0
        else:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                ok = True
            except OSError:
                ok = False
        if ok:
            return
        if time.monotonic() > deadline:
            raise PgServerError(f"server on 127.0.0.1:{port} did not accept connections within {timeout_s}s")
        time.sleep(0.1)


def _log_tail(log_file: Path, n: int = 3000) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return ""
    return f"\n--- server log ({log_file}) ---\n{text[-n:]}" if text else ""


# --------------------------------------------------------------------------- CLI


def _cmd_check() -> int:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        hint = " (`start()` would install it with apt-get, as root)" if _is_root() and shutil.which("apt-get") else ""
        print(f"PostgreSQL server binaries: NOT FOUND{hint}")
        return 1
    print(f"PostgreSQL server binaries: {bin_dir} (version {server_version(bin_dir)})")
    if _is_root():
        print(f"running as root: the server will run as the `{RUN_AS}` user via runuser")
    return 0


def _cmd_run(cmd: list[str], base_dir: Path | None) -> int:
    if not cmd:
        print("pg_server run: give a command after `--`", file=sys.stderr)
        return 2
    child: subprocess.Popen | None = None
    received: list[int] = []

    def on_signal(signum, _frame):
        # While the server starts, only note the signal: interrupting initdb/pg_ctl half-way
        # could orphan them; it is acted on as soon as start() returns (a second or two).
        received.append(signum)
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    srv: PgServer | None = None
    try:
        t0 = time.monotonic()
        srv = start(base_dir)
        if received:
            print(f"pg_server: got signal {received[0]} while starting; stopping", file=sys.stderr)
            return 128 + received[0]
        print(f"pg_server: PostgreSQL {srv.version} on 127.0.0.1:{srv.port} ready in "
              f"{time.monotonic() - t0:.1f}s; {URL_ENV} is set", file=sys.stderr)
        try:
            child = subprocess.Popen(cmd, env={**os.environ, URL_ENV: srv.url})
        except OSError as e:
            print(f"pg_server run: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
            return 127
        rc = child.wait()
        return 128 - rc if rc < 0 else rc  # killed by signal N: 128+N, as a shell reports it
    except PgServerError as e:
        print(f"pg_server: {e}", file=sys.stderr)
        return 1
    finally:
        # The server goes whatever happened; a second signal meanwhile must not cut this short.
        for s in old:
            signal.signal(s, signal.SIG_IGN)
        if srv is not None:
            srv.stop()
        for s, h in old.items():
            signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pg_server.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start a server, run CMD with CVML_TEST_PG_URL set, stop the server")
    run_p.add_argument("--base-dir", type=Path, default=None, help="where to create the temporary data dir")
    run_p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    sub.add_parser("check", help="print whether the server binaries are found")
    args = parser.parse_args(argv)
    if args.command == "check":
        return _cmd_check()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return _cmd_run(cmd, args.base_dir)


if __name__ == "__main__":
    sys.exit(main())
