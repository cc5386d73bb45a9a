// Unit tests of the client's logic with a fake WebSocket and mocked timers.
import { test, mock, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { Pushfleet, backoffDelay, CloseCode } from "../pushfleet.js";

class FakeSocket {
  static all = [];
  constructor(url, protocol) {
    this.url = url;
    this.protocol = protocol;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  send(s) {
    this.sent.push(JSON.parse(s));
  }
  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }
  // test helpers
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  frame(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop(code) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

const last = () => FakeSocket.all[FakeSocket.all.length - 1];

beforeEach(() => {
  FakeSocket.all = [];
  mock.timers.enable({ apis: ["setTimeout"] });
});
afterEach(() => mock.timers.reset());

function client(extra = {}) {
  const states = [];
  const errors = [];
  const pf = new Pushfleet("ws://gw/ws", { WebSocket: FakeSocket, random: () => 0.5, ...extra });
  pf.on("state", (s) => states.push(s));
  pf.on("error", (e) => errors.push(e));
  return { pf, states, errors };
}

test("backoff is full jitter, exponential and capped", () => {
  const o = { minDelay: 500, maxDelay: 20000 };
  assert.equal(backoffDelay(0, o, () => 0.999), 499);
  assert.equal(backoffDelay(3, o, () => 0.5), 2000);
  assert.equal(backoffDelay(10, o, () => 0.999), 19980);
  assert.equal(backoffDelay(60, o, () => 0.999), 19980);
  assert.equal(backoffDelay(5, o, () => 0), 0);
});

test("subscribes channels on open, sends the JSON subprotocol and the token", () => {
  const { pf, states } = client({ channels: ["news"], token: "a b" });
  const ws = last();
  assert.equal(ws.url, "ws://gw/ws?token=a%20b");
  assert.equal(ws.protocol, "pushfleet.v1.json");
  pf.subscribe("scores", () => {}); // not open yet: nothing sent now
  assert.deepEqual(ws.sent, []);
  ws.open();
  assert.deepEqual(ws.sent.map((m) => [m.op, m.channels]), [["subscribe", ["news", "scores"]]]);
  assert.deepEqual(states, ["open"]); // "connecting" was set in the constructor
  assert.equal(pf.state, "open");
});

test("dispatches each message of a batch in order, with meta", () => {
  const { pf } = client();
  last().open();
  const got = [];
  pf.subscribe("news", (m, meta) => got.push([m, meta.index, meta.batchSize, meta.channel]));
  const bcast = [];
  pf.subscribe("*", (m) => bcast.push(m));
  assert.deepEqual(last().sent.at(-1).channels, ["news"]); // "*" is never sent
  last().frame({ op: "batch", channel: "news", messages: [1, { a: 2 }, "three"] });
  last().frame({ op: "batch", channel: "other", messages: [9] });
  last().frame({ op: "batch", channel: "*", messages: ["all"], future_field: true });
  assert.deepEqual(got, [
    [1, 0, 3, "news"],
    [{ a: 2 }, 1, 3, "news"],
    ["three", 2, 3, "news"],
  ]);
  assert.deepEqual(bcast, ["all"]);
});

test("unsubscribe sends once the last handler is gone", () => {
  const { pf } = client();
  last().open();
  const h1 = () => {};
  const stop2 = pf.subscribe("c", () => {});
  pf.subscribe("c", h1);
  assert.equal(last().sent.filter((m) => m.op === "subscribe").length, 1);
  pf.unsubscribe("c", h1);
  assert.equal(last().sent.filter((m) => m.op === "unsubscribe").length, 0);
  stop2();
  assert.deepEqual(last().sent.at(-1).op, "unsubscribe");
  assert.deepEqual(pf.channels, []);
});

test("error frames become error events; the connection stays", () => {
  const { errors, pf } = client();
  last().open();
  last().frame({ op: "error", code: "invalid_channel", message: "bad", id: 3 });
  assert.deepEqual(errors, [{ code: "invalid_channel", message: "bad", id: 3 }]);
  assert.equal(pf.state, "open");
});

test("a refused channel is dropped and named; the others of its command are asked for alone", () => {
  const { pf, errors } = client({ channels: ["news", "secret", "scores"] });
  const got = [];
  pf.subscribe("news", (m) => got.push(m));
  const ws = last();
  ws.open();
  const all = ws.sent[0];
  assert.deepEqual(all.channels, ["news", "secret", "scores"]);
  // The gateway refuses the whole command for one channel: each is asked for on its own.
  ws.frame({ op: "error", code: "forbidden", message: "not granted", id: all.id });
  const singles = ws.sent.slice(1);
  assert.deepEqual(singles.map((m) => m.channels), [["news"], ["secret"], ["scores"]]);
  assert.deepEqual(errors, [], "the group's refusal is not reported: its channels are retried");
  ws.frame({ op: "subscribed", channels: ["news"], id: singles[0].id });
  ws.frame({ op: "error", code: "forbidden", message: "not granted", id: singles[1].id });
  ws.frame({ op: "subscribed", channels: ["scores"], id: singles[2].id });
  assert.deepEqual(errors, [{ code: "forbidden", message: "not granted", id: singles[1].id, channels: ["secret"] }]);
  assert.deepEqual(pf.channels, ["news", "scores"]);
  ws.frame({ op: "batch", channel: "news", messages: [1] });
  assert.deepEqual(got, [1]);
  // A reconnect asks again only for what was granted.
  ws.drop(1006);
  mock.timers.tick(250);
  last().open();
  assert.deepEqual(last().sent.map((m) => m.channels), [["news", "scores"]]);
  // Other refusals (rate_limited) keep the channel and are reported with its name.
  pf.subscribe("later", () => {});
  const later = last().sent.at(-1);
  last().frame({ op: "error", code: "rate_limited", message: "slow down", id: later.id });
  assert.deepEqual(errors.at(-1).channels, ["later"]);
  assert.ok(pf.channels.includes("later"));
  // A refusal that a later subscribe of the same channel overtook leaves that one be.
  pf.unsubscribe("later");
  pf.subscribe("x", () => {});
  const first = last().sent.at(-1);
  pf.unsubscribe("x");
  pf.subscribe("x", () => {});
  last().frame({ op: "error", code: "forbidden", message: "no", id: first.id });
  assert.ok(pf.channels.includes("x"), "the second subscribe awaits its own answer");
  last().frame({ op: "error", code: "forbidden", message: "no", id: last().sent.at(-1).id });
  assert.ok(!pf.channels.includes("x"));
  // A frame that is JSON but not an object is reported, not thrown.
  last().frame(null);
  assert.equal(errors.at(-1).code, "bad_frame");
});

test("reconnects with backoff after a drop and resubscribes", () => {
  const { pf, states } = client({ channels: ["a"] });
  last().open();
  last().drop(1006);
  assert.equal(pf.state, "reconnecting");
  assert.equal(FakeSocket.all.length, 1);
  mock.timers.tick(124); // random 0.5 × 500 ms ceiling = 250 ms
  assert.equal(FakeSocket.all.length, 1);
  mock.timers.tick(126);
  assert.equal(FakeSocket.all.length, 2);
  last().drop(1006); // second failure before opening: ceiling 1000 → 500 ms
  mock.timers.tick(499);
  assert.equal(FakeSocket.all.length, 2);
  mock.timers.tick(1);
  assert.equal(FakeSocket.all.length, 3);
  last().open();
  assert.deepEqual(last().sent[0], { op: "subscribe", channels: ["a"], id: last().sent[0].id });
  assert.deepEqual(states, ["open", "reconnecting", "open"]);
  // attempts reset after a successful open
  last().drop(1006);
  mock.timers.tick(250);
  assert.equal(FakeSocket.all.length, 4);
});

test("1001 reconnects quickly; 1008 does not retry and reports an error", () => {
  const { pf, errors } = client({ channels: ["a"] });
  last().open();
  for (let i = 0; i < 5; i++) {
    last().drop(CloseCode.DRAINING);
    mock.timers.tick(125); // 0.5 × 250 ms, whatever the attempt count
    last().open();
  }
  assert.equal(FakeSocket.all.length, 6);
  last().drop(CloseCode.POLICY);
  mock.timers.tick(60000);
  assert.equal(FakeSocket.all.length, 6);
  assert.equal(pf.state, "closed");
  assert.equal(errors.at(-1).code, "unauthorized");
});

test("pings when quiet and reconnects when no pong comes", () => {
  const { pf } = client({ pingInterval: 1000, pongTimeout: 500 });
  const ws = last();
  ws.open();
  mock.timers.tick(999);
  assert.deepEqual(ws.sent, []);
  mock.timers.tick(1);
  assert.equal(ws.sent.at(-1).op, "ping");
  ws.frame({ op: "pong", id: ws.sent.at(-1).id }); // answered: no reconnect
  mock.timers.tick(1000);
  assert.equal(ws.sent.at(-1).op, "ping");
  mock.timers.tick(500); // no answer this time
  assert.equal(ws.closedWith, 1000);
  assert.equal(pf.state, "reconnecting");
  mock.timers.tick(250);
  assert.equal(FakeSocket.all.length, 2);
});

test("close() is final", () => {
  const { pf, states } = client();
  last().open();
  pf.close();
  assert.equal(last().closedWith, 1000);
  last().drop(1000);
  mock.timers.tick(60000);
  assert.equal(FakeSocket.all.length, 1);
  assert.deepEqual(states, ["open", "closed"]);
});
