"""NVMe-oF conformance cases: a verdict per case, per link, mandatory or informational.

The shape of a case (tests/acceptance/test_conformance_*.py)::

    @pytest.mark.conformance(case="discovery.generation_counter", category="Discovery")
    @pytest.mark.capability("nvme_namespace")
    def test_generation_counter(link, nvme_fabric, conformance):
        '''What the case proves.'''
        ...
        conformance.time("aen_s", seconds)  # a measured time, checked like any metric

- ``case`` is ``<category>.<name>`` in lower case; ``category`` its display name.
- The test asks for a capability (``nvme_namespace``), so it runs over every
  link offering it: fc_nvme, nvmet_rdma, nvme_tcp, and ``-m <link type>``
  selects its rows.
- ``nvme_fabric`` (:class:`fabqual.conformance.fabric.NvmeFabric`) reaches the
  link's target and host: what a case creates there (subsystems, ports,
  referrals, hosts, keys, controllers) goes into its own journal, undone when
  the case ends, also when it fails or the run is killed (the sweep replays it).
- The thresholds profile says per case whether it is mandatory or
  informational, and bounds its measured times
  (:mod:`fabqual.conformance.policy`); a case missing there is an error naming
  the profile file. A lab promotes a case by editing its profile.
- The report shows a conformance table per link; the verdict counts mandatory
  cases only (an informational failure is shown, not counted).
"""
