"""Neutron ML2 mechanism driver ``calico`` for calico-rs.

Python only adapts Neutron's interfaces; the translation of ports, security
groups and subnets, every datastore read and write, resync, leader election
and status watching happen in the ``calico-neutron`` co-process (Rust).
"""
