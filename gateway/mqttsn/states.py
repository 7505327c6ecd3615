"""The states of an MQTT-SN client's connection (v1.2 §6.14), shared by the channel
and its deliveries."""

CONNECTING = 0  # CONNECT received, will handshake under way
AUTHENTICATING = 1
ACTIVE = 2
ASLEEP = 3  # DISCONNECT with a duration: deliveries are held
AWAKE = 4  # a PINGREQ woke it: held messages go out, then PINGRESP and ASLEEP again
CLOSED = 5
LIVE = (ACTIVE, ASLEEP, AWAKE)
SLEEPY = (ASLEEP, AWAKE)
