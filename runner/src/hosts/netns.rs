//! Network namespaces on this machine as hosts (being written).
