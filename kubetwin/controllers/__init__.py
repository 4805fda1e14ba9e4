"""Controllers of kube-controller-manager the twin runs (namespaces, garbage collection, workloads, resourceclaims)."""
