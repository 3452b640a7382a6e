// A browser-style STOMP client for test_stomp.py: @stomp/stompjs over Node's WebSocket (the
// same API as a browser's, enabled by --experimental-websocket on Node 20). It offers the
// v10/v11/v12.stomp subprotocols and sends text frames, as in a browser.
// Usage: node --experimental-websocket client.mjs <ws url> <subscribe destination> <send destination>
// Prints one JSON line per event; exits 0 after one MESSAGE was received and one SEND was
// acknowledged by a RECEIPT, 1 on an error or after 20 s.
import { Client } from "@stomp/stompjs";

const [url, subDest, sendDest] = process.argv.slice(2);
const say = (event) => console.log(JSON.stringify(event));
const client = new Client({
  brokerURL: url,
  reconnectDelay: 0,
  heartbeatIncoming: 1000,
  heartbeatOutgoing: 1000,
});
let got = false;
let receipted = false;
const done = () => {
  if (got && receipted) {
    client.deactivate().then(() => process.exit(0));
  }
};
client.onConnect = (frame) => {
  say({ event: "connected", version: frame.headers.version });
  client.watchForReceipt("sub", () => {
    say({ event: "subscribed" });
  });
  client.subscribe(
    subDest,
    (message) => {
      say({ event: "message", destination: message.headers.destination, body: message.body });
      message.ack();
      got = true;
      client.watchForReceipt("sent", () => {
        say({ event: "receipt" });
        receipted = true;
        done();
      });
      client.publish({ destination: sendDest, body: "from stompjs", headers: { receipt: "sent", "x-origin": "browser" } });
    },
    { id: "js", ack: "client-individual", receipt: "sub" },
  );
};
client.onStompError = (frame) => {
  say({ event: "error", message: frame.headers.message, body: frame.body });
  process.exit(1);
};
client.onWebSocketClose = (evt) => {
  if (!(got && receipted)) {
    say({ event: "closed", code: evt.code });
    process.exit(1);
  }
};
setTimeout(() => {
  say({ event: "timeout" });
  process.exit(1);
}, 20000);
client.activate();
