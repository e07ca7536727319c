"""Tests against a real kube-apiserver + etcd, with real helm and kubectl."""
