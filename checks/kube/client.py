"""One handle on a cluster, whatever serves it: a real Lambda cluster or the embedded twin.

The only input is a kubeconfig path and an optional context (:class:`ClusterTarget`), so nothing here knows
or cares whether a twin answers. Everything that talks to the cluster goes through a :class:`ClusterClient`:

* the official ``kubernetes`` client, with a *per-instance* ``Configuration`` (the library's global default is
  never touched, so two clusters — say a twin and a real one — can be used side by side in one process);
* the real kubectl and helm, pointed at the same kubeconfig/context, with their caches and helm's config in a
  private run folder, so a user's ``~/.kube`` and ``~/.config/helm`` are never read or written.

Kubeconfig contents and tokens are never logged: errors name the file and the context, nothing more.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from checks.errors import UsageError
from checks.kube.binaries import Tools, find_tools
from checks.kube.retry import DEFAULT_POLICY, RetriesExhausted, RetryPolicy, call_with_retry, describe_error

#: Default seconds a kubectl/helm invocation may run before it is killed.
DEFAULT_TOOL_TIMEOUT_S = 300.0
#: Environment variables removed from kubectl/helm's environment: they would point them elsewhere.
_SCRUBBED_ENV = ("KUBECONFIG", "HELM_KUBECONTEXT", "HELM_NAMESPACE", "HELM_KUBETOKEN", "HELM_KUBEAPISERVER")


@dataclass(frozen=True)
class ClusterTarget:
    """Which cluster: everything a :class:`ClusterClient` needs to reach it."""

    kubeconfig: Path
    """Path of the kubeconfig file (a twin writes one; a real cluster's comes from its admin)."""
    context: str | None = None
    """Context inside the kubeconfig; None means the file's ``current-context``."""

    def describe(self) -> str:
        """Human name for messages: file and context, never the file's contents."""
        return f"{self.kubeconfig} (context {self.context or '<current>'})"


@dataclass(frozen=True)
class ServerVersion:
    """What ``/version`` says."""

    major: int
    """Major version, e.g. 1."""
    minor: int
    """Minor version, e.g. 37 (vendor suffixes such as ``37+`` are dropped)."""
    git_version: str
    """Full build string, e.g. ``v1.37.0``."""


def _reason(exc: BaseException) -> str:
    """The innermost cause of a connection failure in a few words (``Connection refused``, ``timed out``)."""
    while True:
        inner = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    if "]" in text and text.startswith("<"):  # urllib3's '<...Connection object at 0x..>: Failed to ...'
        text = text.split(">: ", 1)[-1]
    return text[:160]


def _digits(text: str) -> int:
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else 0


def kubeconfig_contexts(path: Path) -> list[str]:
    """Context names in a kubeconfig (names only — nothing else from the file is ever surfaced)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(data, dict):
        return []
    return [str(c.get("name")) for c in data.get("contexts") or [] if isinstance(c, dict) and c.get("name")]


def check_kubeconfig(path: Path, context: str | None) -> None:
    """UsageError (one line, naming the file, never its contents) unless ``path`` is a readable kubeconfig
    that has ``context`` (or a current-context when ``context`` is None).

    The official loader reports a broken file with a multi-line parser trace that quotes the file; a check run
    used to print it once per check (issue 14). Here it is said once, before anything else runs.
    """
    where = str(path)
    if not path.is_file():
        raise UsageError("kubeconfig file not found", where=where)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the kubeconfig: {exc.strerror or exc.__class__.__name__}",
                         where=where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"the kubeconfig is not valid YAML{at}", where=where) from None
    if not isinstance(data, dict) or not isinstance(data.get("contexts"), list):
        raise UsageError("not a kubeconfig (no contexts list)", where=where)
    known = kubeconfig_contexts(path)
    if context is not None and context not in known:
        raise UsageError(f"no context {context!r} in this kubeconfig (contexts: {', '.join(known) or 'none'})",
                         where=where)
    if context is None and not data.get("current-context"):
        raise UsageError(f"the kubeconfig names no current-context: pass --context (contexts: "
                         f"{', '.join(known) or 'none'})", where=where)


class ClusterClient:
    """API client, kubectl and helm for one :class:`ClusterTarget`.

    Use as a context manager (or call :meth:`close`): it owns an HTTP connection pool and, unless ``run_dir``
    is given, a temporary folder for the tools' caches.
    """

    def __init__(
        self,
        target: ClusterTarget,
        *,
        run_dir: Path | None = None,
        tools: Tools | None = None,
        retry: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        kubeconfig = target.kubeconfig.expanduser()
        check_kubeconfig(kubeconfig, target.context)
        self.target = ClusterTarget(kubeconfig.resolve(), target.context)
        self.retry = retry
        """Policy used for reads this package makes (lists, gets); callers may reuse it."""
        try:
            self.api_client: k8s.ApiClient = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.target.kubeconfig), context=target.context, persist_config=False
            )
        except (k8s_config.ConfigException, ValueError, TypeError, KeyError) as exc:
            # The library's messages name fields, not secrets; keep only the first line to be safe.
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise UsageError(f"cannot load kubeconfig: {first}", where=str(self.target.kubeconfig)) from None
        self._owns_run_dir = run_dir is None
        self.run_dir = Path(tempfile.mkdtemp(prefix="dra-lab-kube-")) if run_dir is None else run_dir
        """Folder for kubectl's cache and helm's cache/config/data (private to this ClusterClient)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._tools = tools
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)
        self.batch = k8s.BatchV1Api(self.api_client)
        self.resource = k8s.ResourceV1Api(self.api_client)
        self.coordination = k8s.CoordinationV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.version_api = k8s.VersionApi(self.api_client)

    # -- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the connection pool and the private run folder (when this ClusterClient created it)."""
        self.api_client.close()  # type: ignore[no-untyped-call]
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ClusterClient({self.target.describe()})"

    # -- API -------------------------------------------------------------------------------------------------
    def server_version(self) -> ServerVersion:
        """The API server's version (retried on transient errors)."""
        info = call_with_retry(self.retry, self.version_api.get_code, what="GET /version")
        return ServerVersion(_digits(str(info.major)), _digits(str(info.minor)), str(info.git_version))

    def ping(self, timeout_s: float = 5.0) -> ServerVersion:
        """``/version`` once, with a short timeout and no retries: UsageError (one line) when unreachable.

        Used before a run starts, so a wrong address, a stopped twin or an expired token is said in one line
        within seconds instead of through every check's retries.
        """
        # Answers that mean "busy" (429, 5xx) are retried within the budget; no answer at all is not.
        policy = dataclasses.replace(self.retry, retry_connection_errors=False, deadline_s=timeout_s)
        try:
            info = call_with_retry(policy, lambda: self.version_api.get_code(_request_timeout=(timeout_s, timeout_s)),
                                   what="GET /version")
        except RetriesExhausted as exc:
            raise UsageError(f"the API server keeps answering {describe_error(exc.last)}",
                             where=self.describe()) from None
        except ApiException as exc:
            hint = " (credentials rejected)" if exc.status in (401, 403) else ""
            raise UsageError(f"the API server answered HTTP {exc.status}{hint}", where=self.describe()) from None
        except Exception as exc:
            raise UsageError(f"cannot reach the API server at {self.server_url()}: {_reason(exc)}",
                             where=self.describe()) from None
        return ServerVersion(_digits(str(info.major)), _digits(str(info.minor)), str(info.git_version))

    def server_url(self) -> str:
        """The API server URL this client talks to (no credentials)."""
        return str(self.api_client.configuration.host)

    def describe(self) -> str:
        """File and context, never contents."""
        return self.target.describe()

    # -- binaries --------------------------------------------------------------------------------------------
    @property
    def tools(self) -> Tools:
        """kubectl and helm, resolved on first use (so API-only users never need them)."""
        if self._tools is None:
            self._tools = find_tools()
        return self._tools

    def tool_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for kubectl/helm: helm's homes under the run folder, kube env vars removed."""
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        for var, sub in (("HELM_CACHE_HOME", "helm/cache"), ("HELM_CONFIG_HOME", "helm/config"),
                         ("HELM_DATA_HOME", "helm/data")):
            path = self.run_dir / sub
            path.mkdir(parents=True, exist_ok=True)
            env[var] = str(path)
        if extra:
            env.update(extra)
        return env

    def kubectl_argv(self, *args: str) -> list[str]:
        """The full kubectl command line for ``args`` (exposed so reports can show what ran)."""
        argv = [str(self.tools.kubectl.path), "--kubeconfig", str(self.target.kubeconfig),
                "--cache-dir", str(self.run_dir / "kubectl-cache")]
        if self.target.context:
            argv += ["--context", self.target.context]
        return [*argv, *args]

    def helm_argv(self, *args: str) -> list[str]:
        """The full helm command line for ``args``."""
        argv = [str(self.tools.helm.path), *args, "--kubeconfig", str(self.target.kubeconfig)]
        if self.target.context:
            argv += ["--kube-context", self.target.context]
        return argv

    def _run(self, argv: Sequence[str], args: Sequence[str], *, check: bool, timeout: float,
             input_text: str | None, env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False,
            input=input_text, env=self.tool_env(env), cwd=self.run_dir,
        )
        if check and proc.returncode != 0:
            raise ToolFailed(Path(argv[0]).name, args, proc)
        return proc

    def kubectl(self, *args: str, check: bool = True, timeout: float = DEFAULT_TOOL_TIMEOUT_S,
                input_text: str | None = None, env: Mapping[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; ``check`` raises :class:`ToolFailed` on a non-zero exit."""
        return self._run(self.kubectl_argv(*args), args, check=check, timeout=timeout,
                         input_text=input_text, env=env)

    def helm(self, *args: str, check: bool = True, timeout: float = DEFAULT_TOOL_TIMEOUT_S,
             input_text: str | None = None, env: Mapping[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
        """Run helm against this cluster with private cache/config/data homes."""
        return self._run(self.helm_argv(*args), args, check=check, timeout=timeout,
                         input_text=input_text, env=env)


class ToolFailed(Exception):
    """kubectl or helm exited non-zero; the message carries the subcommand and stderr's tail."""

    def __init__(self, tool: str, args: Sequence[str], proc: subprocess.CompletedProcess[str]) -> None:
        # The leading subcommand words only: flag values (a --set, a token) are never echoed.
        words: list[str] = []
        for arg in args:
            if arg.startswith("-") or len(words) == 2:
                break
            words.append(arg)
        tail = " ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
        super().__init__(f"{tool} {' '.join(words)} exited {proc.returncode}: {tail}")
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
