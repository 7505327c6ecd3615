"""The service-side half of security: password files, ACL files and plugins, loaded
from the configuration into the ``Policy`` objects the hub's ``Security`` applies."""
