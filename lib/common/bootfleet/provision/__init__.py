"""Deployments become nodes and servers: placement checks, one provisioning pass, the fleet."""
