"""Topologies whose nodes are this machine (``address: local``), for plugin and doctor tests."""

from __future__ import annotations

LOCAL_RACK = """
name: local-rack
profile: emulated
nodes:
  - name: here
    address: local
    roles: [nvme_target, nvme_host, rdma_endpoint, ipofc_end]
    nvme_target: {backend: kernel}
    hbas:
      - {name: fc0, model: "QLE2742 (emulated by nvme-fcloop)", emulation: fcloop}
    rnics:
      - {name: rnic0, netdev: lo, rdma_device: rxe0, emulation: rxe, driver: rdma_rxe}
    scratch_devices:
      - {name: nullb0, path: /dev/nullb0, create: null_blk}
links:
  - name: fc0
    type: fc_nvme
    target: {node: here, device: fc0}
    host: {node: here, device: fc0}
    namespaces: [nullb0]
  - name: roce0
    type: nvmet_rdma
    target: {node: here, device: rnic0}
    host: {node: here, device: rnic0}
    namespaces: [nullb0]
"""
