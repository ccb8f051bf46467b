"""The transport seam (protocols) and the registry of transport implementations."""
