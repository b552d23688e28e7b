"""vSphere side of the PVRDMA link: vCenter driver, ESXi host checks, and the vcsim simulator."""
