# The Neutron ML2 mechanism driver `calico` of calico-rs: a thin shim over
# the `calico-neutron` co-process (bins/calico-neutron), where the
# translation and every datastore access live.
from setuptools import setup

setup(
    name="networking-calico-rs",
    version="0.1.0",
    description="Neutron ML2 mechanism driver 'calico' for calico-rs",
    license="Apache-2.0",
    packages=["networking_calico_rs"],
    entry_points={
        "neutron.ml2.mechanism_drivers": [
            "calico = networking_calico_rs.mech_calico:CalicoMechanismDriver",
        ],
        "console_scripts": [
            "calico-resync = networking_calico_rs.resync_cli:main",
        ],
    },
)
