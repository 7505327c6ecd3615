"""CoAP (RFC 7252) endpoint on aiocoap, sharing the process's asyncio loop and hub.

``transport`` starts aiocoap under Twisted's asyncio reactor, ``manager`` bounds what
aiocoap keeps per request, ``resources`` answers ``/ps/{topic}``, ``/mqtt/connection``
and ``/.well-known/core`` the way EMQX's CoAP gateway does, ``clients`` holds the
hub sessions of observers and connection-mode clients, ``refusals`` turns the hub's
refusals into response codes and ``content`` maps Content-Format to message properties.
"""
