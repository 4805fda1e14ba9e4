"""The ``status.allocation`` the allocator writes for each claim of a finished search: results (with admin
access, tolerations, binding conditions, share IDs, consumed capacity), device configs from the classes and
the claim, and the node selector that says where the claim is usable (kubernetes-dra.md §3.9).

Why apart from the search: this is output shaping only, and the part whose wording and field order change
between releases (1.37 drops ``requests`` on configs that cover every request).
"""

from __future__ import annotations

from collections.abc import Sequence

from kubetwin.scheduler.dra.pools import spec_of
from kubetwin.scheduler.dra.search import DeviceSearch, Picked, Request
from kubetwin.scheduler.dra.state import Obj
from kubetwin.scheduler.quantity import format_quantity

__all__ = ["build_allocations"]


def build_allocations(search: DeviceSearch) -> list[Obj]:
    """One ``status.allocation`` per claim from a finished search (results, then class configs, then the
    claim's own configs, then the node selector)."""
    out: list[Obj] = []
    for ci, claim in enumerate(search.claims):
        devices = spec_of(claim).get("devices") or {}
        results: list[Obj] = []
        for p in search.results[ci]:
            res: Obj = {"request": p.req.name, "driver": p.cand.did[0], "pool": p.cand.did[1],
                        "device": p.cand.did[2]}
            if p.req.admin:
                res["adminAccess"] = True
            if p.req.tolerations:
                res["tolerations"] = [dict(t) for t in p.req.tolerations]
            if search.features.binding_conditions:
                if p.cand.device.get("bindingConditions"):
                    res["bindingConditions"] = list(p.cand.device["bindingConditions"])
                if p.cand.device.get("bindingFailureConditions"):
                    res["bindingFailureConditions"] = list(p.cand.device["bindingFailureConditions"])
            if p.share_id is not None:
                res["shareID"] = p.share_id
            if p.consumed:
                res["consumedCapacity"] = {n: format_quantity(v) for n, v in p.consumed.items()}
            results.append(res)

        chosen: list[Request] = []
        for ri, alts in enumerate(search.requests[ci]):
            chosen.append(alts[search.selected_sub.get((ci, ri), 0)])
        config: list[Obj] = []
        class_ranges: dict[str, tuple[int, int]] = {}
        for r in chosen:
            rng = class_ranges.get(r.class_name)
            if rng is not None:
                for i in range(*rng):
                    config[i]["requests"].append(r.name)
                continue
            begin = len(config)
            for c in spec_of(r.cls).get("config") or []:
                entry: Obj = {"source": "FromClass", "requests": [r.name]}
                entry.update({k: v for k, v in c.items() if k != "requests"})
                config.append(entry)
            class_ranges[r.class_name] = (begin, len(config))
        for c in devices.get("config") or []:
            reqs = list(c.get("requests") or [])
            body = {k: v for k, v in c.items() if k != "requests"}
            if not reqs or any(r.base_name in reqs or (r.sub_name and r.name in reqs) for r in chosen):
                entry = {"source": "FromClaim", **({"requests": reqs} if reqs else {}), **body}
                config.append(entry)
        if search.features.minor >= 37:
            for entry in config:
                reqs = entry.get("requests") or []
                if reqs and all(r.base_name in reqs or (r.sub_name and r.name in reqs) for r in chosen):
                    entry.pop("requests", None)
        allocation: Obj = {"devices": {"results": results}}
        if config:
            allocation["devices"]["config"] = config
        ns = _node_selector(search.node, search.results[ci])
        if ns is not None:
            allocation["nodeSelector"] = ns
        out.append(allocation)
    return out

def _node_selector(node: Obj, picked: Sequence[Picked]) -> Obj | None:
    """Where the claim can be used: the node itself when a device is node-local, else the union of the picked
    devices' first selector terms; None when every device is reachable from every node."""
    node_name = (node.get("metadata") or {}).get("name")
    fields_: list[Obj] = []
    exprs: list[Obj] = []
    for p in picked:
        src = p.cand.device if spec_of(p.cand.slice).get("perDeviceNodeSelection") else spec_of(p.cand.slice)
        if src.get("nodeName") or p.cand.device.get("bindsToNode"):
            return {"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}
        sel = src.get("nodeSelector")
        if sel and sel.get("nodeSelectorTerms"):
            first = sel["nodeSelectorTerms"][0]
            pairs = ((first.get("matchFields") or [], fields_), (first.get("matchExpressions") or [], exprs))
            for src_list, dst in pairs:
                for req in src_list:
                    if not any(x.get("key") == req.get("key") and x.get("operator") == req.get("operator")
                               and set(x.get("values") or []) == set(req.get("values") or []) for x in dst):
                        dst.append(dict(req))
    if not fields_ and not exprs:
        return None
    term: Obj = {}
    if exprs:
        term["matchExpressions"] = exprs
    if fields_:
        term["matchFields"] = fields_
    return {"nodeSelectorTerms": [term]}
