// MQTT.js against the gateway: connect to URL, subscribe to TOPIC/#, publish one
// message at each QoS to TOPIC/<qos>, print each message received as a JSON line,
// then "done". Usage: node pubsub.js URL TOPIC [CA_FILE] [PROTOCOL_VERSION]
"use strict";
const fs = require("fs");
const mqtt = require("mqtt");

const [url, topic, ca, version] = process.argv.slice(2);
const options = { clientId: "mqttjs-" + process.pid, connectTimeout: 10000, reconnectPeriod: 0 };
if (ca) options.ca = fs.readFileSync(ca);
if (version) options.protocolVersion = Number(version);
if (version === "3") options.protocolId = "MQIsdp";   // MQTT 3.1's name

const client = mqtt.connect(url, options);
const received = [];
client.on("error", (err) => { console.error("error: " + err.message); process.exit(1); });
client.on("message", (t, payload, packet) => {
  received.push(t);
  console.log(JSON.stringify({ topic: t, payload: payload.toString(), qos: packet.qos }));
  if (received.length === 3) client.end(false, () => console.log("done"));
});
client.on("connect", () => {
  client.subscribe(topic + "/#", { qos: 2 }, (err) => {
    if (err) { console.error("subscribe: " + err.message); process.exit(1); }
    for (const qos of [0, 1, 2]) client.publish(`${topic}/${qos}`, `hello ${qos}`, { qos });
  });
});
