"""Emulated ``compute-domain-daemon``: one per node of a ComputeDomain, runs (emulated) ``nvidia-imex`` (§11.3–§11.6).

``run``: refuses without the CDI env of its daemon claim (``COMPUTE_DOMAIN_UUID``); patches its pod's clique
label; with an empty clique ID logs ``no cliqueID: skipping controller and IMEX daemon management`` and idles
(the controller lists the node from the pod); otherwise renders the IMEX config (and, in DNS-names mode, the
static nodes config) into its ``/imexd`` directory, joins the domain — an entry in the ComputeDomainClique
``<cdUID>.<cliqueID>`` (ComputeDomainCliques) or in ``CD.status.nodes`` (legacy) — with status Ready (the
emulated ``nvidia-imex-ctl -q`` answers ``READY`` at once), and on SIGTERM removes that entry with the real log
line. ``check`` (the probes) succeeds. API requests are logged at V6 the way client-go's round_trippers does,
so verbosity checks see them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from checks.driver import computedomains as cd
from checks.driver import gates as gate_table
from checks.driver import logs
from kubetwin.kubelet.seam import ContainerContext


def round_trip(verb: str, url: str, status: str = "200 OK") -> logs.LogLine:
    """client-go's V6 response line (CL2/CL3 grep ``round_trippers.go`` and ``"Response" verb="GET"``)."""
    return logs.LogLine(6, logs.structured("Response", verb=verb, url=url, status=status, milliseconds=1),
                        "round_trippers.go", 632)


class _Membership:
    """This daemon's entry in its clique object or in the CD's status."""

    def __init__(self, client: Any, ctx: ContainerContext, cliques: bool,
                 write: Callable[[list[logs.LogLine]], None]) -> None:
        from kubernetes import client as k8s

        self.api: Any = k8s.CustomObjectsApi(client)
        self.write = write
        self.cliques = cliques
        self.node = ctx.env.get("NODE_NAME") or ctx.node_name
        self.ip = ctx.env.get("POD_IP", "")
        self.clique = ctx.env.get("CLIQUE_ID", "")
        self.uid = ctx.env["COMPUTE_DOMAIN_UUID"]
        self.cd_name = ctx.env.get("COMPUTE_DOMAIN_NAME", "")
        self.cd_ns = ctx.env.get("COMPUTE_DOMAIN_NAMESPACE", "")
        self.ns = ctx.env.get("POD_NAMESPACE") or ctx.namespace
        self.max_nodes = int(ctx.env.get("MAX_NODES_PER_IMEX_DOMAIN") or cd.MAX_NODES_PER_IMEX_DOMAIN)
        self.clique_name = cd.clique_object_name(self.uid, self.clique)

    def _entry(self, index: int) -> dict[str, Any]:
        key = "nodeName" if self.cliques else "name"
        return {key: self.node, "ipAddress": self.ip, "cliqueID": self.clique, "index": index, "status": "Ready"}

    @staticmethod
    def _next_index(entries: list[dict[str, Any]]) -> int:
        used = {int(e.get("index", -1)) for e in entries}
        return next(i for i in range(len(used) + 1) if i not in used)

    def join(self) -> None:
        from kubernetes.client.exceptions import ApiException

        for _ in range(20):
            try:
                if self.cliques:
                    self._join_clique()
                else:
                    self._join_status()
                return
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise

    def _join_clique(self) -> None:
        from kubernetes.client.exceptions import ApiException

        args = (cd.API_GROUP, cd.API_VERSION, self.ns, cd.CLIQUE_PLURAL)
        try:
            obj = self.api.get_namespaced_custom_object(*args, self.clique_name)
            self.write([round_trip("GET", f"/apis/{cd.API_GROUP}/{cd.API_VERSION}/namespaces/{self.ns}/"
                                          f"{cd.CLIQUE_PLURAL}/{self.clique_name}")])
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": f"{cd.API_GROUP}/{cd.API_VERSION}", "kind": "ComputeDomainClique",
                    "metadata": {"name": self.clique_name, "namespace": self.ns,
                                 "labels": {cd.CD_LABEL: self.uid, cd.CLIQUE_LABEL: self.clique}},
                    "daemons": [self._entry(0)]}
            self.api.create_namespaced_custom_object(*args[:-1], cd.CLIQUE_PLURAL, body)
            self.write([round_trip("POST", f"/apis/{cd.API_GROUP}/{cd.API_VERSION}/namespaces/{self.ns}/"
                                           f"{cd.CLIQUE_PLURAL}", "201 Created")])
            return
        daemons = [d for d in obj.get("daemons") or [] if d.get("nodeName") != self.node]
        mine = next((d for d in obj.get("daemons") or [] if d.get("nodeName") == self.node), None)
        index = int(mine["index"]) if mine else self._next_index(daemons)
        obj["daemons"] = [*daemons, self._entry(index)]
        self.api.replace_namespaced_custom_object(*args, self.clique_name, obj)

    def _join_status(self) -> None:
        args = (cd.API_GROUP, cd.API_VERSION, self.cd_ns, cd.CD_PLURAL, self.cd_name)
        obj = self.api.get_namespaced_custom_object(*args)
        self.write([round_trip("GET", f"/apis/{cd.API_GROUP}/{cd.API_VERSION}/namespaces/{self.cd_ns}/"
                                      f"{cd.CD_PLURAL}/{self.cd_name}")])
        nodes = [n for n in (obj.get("status") or {}).get("nodes") or [] if n.get("name") != self.node]
        entry = self._entry(self._next_index(nodes))
        obj.setdefault("status", {"status": "NotReady"})["nodes"] = [*nodes, entry]
        self.api.replace_namespaced_custom_object_status(*args, obj)
        self.write([logs.LogLine(0, f"Successfully inserted/updated node in CD (nodeinfo: {entry})", "cdstatus.go",
                                 276)])

    def leave(self) -> None:
        from kubernetes.client.exceptions import ApiException

        for _ in range(20):
            try:
                if self.cliques:
                    args = (cd.API_GROUP, cd.API_VERSION, self.ns, cd.CLIQUE_PLURAL, self.clique_name)
                    obj = self.api.get_namespaced_custom_object(*args)
                    obj["daemons"] = [d for d in obj.get("daemons") or [] if d.get("nodeName") != self.node]
                    self.api.replace_namespaced_custom_object(*args, obj)
                    self.write([logs.LogLine(0, cd.removed_from_clique(self.ip, self.clique_name, self.cd_ns,
                                                                       self.cd_name), "cdclique.go", 420)])
                else:
                    args = (cd.API_GROUP, cd.API_VERSION, self.cd_ns, cd.CD_PLURAL, self.cd_name)
                    obj = self.api.get_namespaced_custom_object(*args)
                    status = obj.get("status") or {}
                    status["nodes"] = [n for n in status.get("nodes") or [] if n.get("name") != self.node]
                    self.api.replace_namespaced_custom_object_status(*args, obj)
                    self.write([logs.LogLine(0, cd.removed_from_status(self.ip, self.cd_ns, self.cd_name),
                                             "cdstatus.go", 414)])
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    raise


def _label_pod(client: Any, ctx: ContainerContext, clique: str) -> None:
    from kubernetes import client as k8s

    ns = ctx.env.get("POD_NAMESPACE") or ctx.namespace
    name = ctx.env.get("POD_NAME") or ctx.pod_name
    k8s.CoreV1Api(client).patch_namespaced_pod(name, ns, {"metadata": {"labels": {cd.CLIQUE_LABEL: clique}}})


def imex_config(pod_ip: str) -> str:
    """The rendered ``/imexd/imexd.cfg`` (our own rendering of the settings §11.6 lists)."""
    return (f"SERVER_PORT=50000\nIMEX_CMD_ENABLED=1\nIMEX_CMD_PORT=50005\nIMEX_CMD_BIND_INTERFACE_IP={pod_ip}\n"
            "IMEX_WAIT_FOR_QUORUM=RECOVERY\nLOG_FILE_NAME=\nIMEX_NODE_CONFIG_FILE=/imexd/nodes_config.cfg\n")


def run_daemon(ctx: ContainerContext, gates: dict[str, bool], verbosity: int,
               write: Callable[[list[logs.LogLine]], None]) -> int:
    """``compute-domain-daemon run`` after the common start (gates valid, startup block logged)."""
    if "check" in ctx.argv and "run" not in ctx.argv:
        return 0
    if not ctx.env.get("COMPUTE_DOMAIN_UUID"):
        ctx.stderr.write(f"Error: {cd.CDI_NOT_APPLIED}\n")
        return 1
    eff = gate_table.effective(gates)
    clique = ctx.env.get("CLIQUE_ID", "")
    client = ctx.api_client()
    with contextlib.ExitStack() as stack:
        stack.callback(client.close)
        _label_pod(client, ctx, clique)
        if not clique:
            write([logs.LogLine(0, cd.NO_CLIQUE_DAEMON, "main.go", 245)])
            ctx.stop.wait()
            write([logs.LogLine(0, "Exiting", "main.go", 248)])
            return 0
        imexd = ctx.work_dir / "imexd"
        imexd.mkdir(parents=True, exist_ok=True)
        pod_ip = ctx.env.get("POD_IP", "")
        (imexd / "imexd.cfg").write_text(imex_config(pod_ip))
        write([logs.LogLine(0, f"Rendered IMEX daemon config file with: {{{pod_ip}}}", "main.go", 488)])
        if eff["IMEXDaemonsWithDNSNames"]:
            max_nodes = int(ctx.env.get("MAX_NODES_PER_IMEX_DOMAIN") or cd.MAX_NODES_PER_IMEX_DOMAIN)
            (imexd / "nodes_config.cfg").write_text("".join(cd.dns_name(i) + "\n" for i in range(max_nodes)))
        member = _Membership(client, ctx, eff["ComputeDomainCliques"], write)
        member.join()
        write([logs.LogLine(1, cd.WAIT_DAEMON_INFO, "main.go", 386)])
        if eff["IMEXDaemonsWithDNSNames"]:
            write([logs.LogLine(0, "updated DNS/IP mapping, old process: send SIGUSR1", "main.go", 421)])
        else:
            write([logs.LogLine(0, "Got update, (re)start IMEX daemon", "main.go", 368)])
        ctx.stop.wait()
        if ctx.killed.is_set():
            return 137
        with contextlib.suppress(Exception):
            member.leave()
        write([logs.LogLine(0, "Exiting", "main.go", 345)])
        return 0


__all__ = ["imex_config", "round_trip", "run_daemon"]
