"""bootfleet: network-boot and provision fleets of machines on IBM Cloud VPC.

The library every function shares; docs/architecture.md maps its sub-packages.
"""
