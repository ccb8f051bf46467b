"""Runtime: listener containers, the per-message pipeline, invocation and forwarding."""
