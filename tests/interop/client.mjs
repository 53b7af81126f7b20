// An Element-grade Matrix test client: matrix-js-sdk with its Rust crypto, driven over stdio.
//
// Usage: INTEROP_PASSWORD=... node client.mjs --homeserver URL --user @u:hs [--isolation all|signed]
//        [--auto-join] [--no-cross-signing]
// stdin:  one JSON command per line, e.g. {"id": 1, "cmd": "send", "room_id": "!r:hs", "body": "hi"}
// stdout: one JSON object per line: {"id": 1, "ok": true, "result": {...}} or
//         {"id": 1, "ok": false, "error": "..."}; unsolicited notices are {"event": "ready", ...}.
// Everything else (SDK logs) goes to stderr.

import { createHash, randomBytes, webcrypto } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";

// stdout is the protocol channel; some SDK modules print, so route every other write to stderr.
const emitLine = process.stdout.write.bind(process.stdout);
process.stdout.write = process.stderr.write.bind(process.stderr);
// The SDK logs at debug level everywhere; keep stderr to warnings unless asked (INTEROP_DEBUG=1).
if (!process.env.INTEROP_DEBUG) {
  for (const level of ["log", "info", "debug", "trace"]) console[level] = () => {};
}

// matrix-js-sdk 43 targets Node 22; on Node 20 it hangs silently without this.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new this((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  };
}

await import("fake-indexeddb/auto");
const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");

const { values: args } = parseArgs({
  options: {
    homeserver: { type: "string" },
    user: { type: "string" },
    isolation: { type: "string", default: "all" },
    "auto-join": { type: "boolean", default: false },
    "no-cross-signing": { type: "boolean", default: false },
  },
});
const password = process.env.INTEROP_PASSWORD;
if (!args.homeserver || !args.user || !password) {
  throw new Error("need --homeserver, --user and INTEROP_PASSWORD");
}
if (!["all", "signed"].includes(args.isolation)) throw new Error("--isolation is all or signed");

// Missing room keys may still arrive; these failures are worth waiting for.
const PENDING_FAILURES = new Set([
  cryptoApi.DecryptionFailureCode.MEGOLM_UNKNOWN_INBOUND_SESSION_ID,
  cryptoApi.DecryptionFailureCode.OLM_UNKNOWN_MESSAGE_INDEX,
]);

function emit(obj) {
  emitLine(JSON.stringify(obj) + "\n");
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

// --- login and start -------------------------------------------------------------------------

const login = await sdk.createClient({ baseUrl: args.homeserver }).loginRequest({
  type: "m.login.password",
  identifier: { type: "m.id.user", user: args.user },
  password,
  initial_device_display_name: "confidant-interop",
});
const client = sdk.createClient({
  baseUrl: args.homeserver,
  userId: login.user_id,
  deviceId: login.device_id,
  accessToken: login.access_token,
});
await client.initRustCrypto({ useIndexedDB: false });
const crypto = client.getCrypto();
crypto.setDeviceIsolationMode(
  args.isolation === "signed"
    ? new cryptoApi.OnlySignedDevicesIsolationMode()
    : new cryptoApi.AllDevicesIsolationMode(false),
);
if (!args["no-cross-signing"]) {
  // As Element does at first login: our own master/self-signing keys, and this device signed.
  await crypto.bootstrapCrossSigning({
    authUploadDeviceSigningKeys: (makeRequest) =>
      makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: login.user_id },
        password,
      }),
  });
}

const seen = new Map(); // room id -> MatrixEvent[] in arrival order
client.on(sdk.RoomEvent.Timeline, (event, room) => {
  if (!room) return;
  if (!seen.has(room.roomId)) seen.set(room.roomId, []);
  seen.get(room.roomId).push(event);
});
client.on(sdk.RoomMemberEvent.Membership, (_event, member) => {
  if (member.userId !== login.user_id || member.membership !== "invite") return;
  emit({ event: "invite", room_id: member.roomId });
  if (args["auto-join"]) {
    client.joinRoom(member.roomId).catch((e) => console.error("auto-join failed", e));
  }
});

const prepared = new Promise((resolve, reject) => {
  client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
    if (state === sdk.SyncState.Prepared) resolve();
    if (state === sdk.SyncState.Error) reject(data?.error ?? new Error("sync failed"));
  });
});
await client.startClient({ initialSyncLimit: 50 });
await prepared;

// --- event description -----------------------------------------------------------------------

function nameOf(enumType, value) {
  return value === null || value === undefined ? null : (enumType[value] ?? String(value));
}

/** A plain description of an event; decryption state as the UI would see it. */
async function describe(event) {
  if (event.isBeingDecrypted()) await event.getDecryptionPromise();
  const encrypted = event.isEncrypted();
  const failed = event.isDecryptionFailure();
  const out = {
    event_id: event.getId(),
    sender: event.getSender(),
    type: event.getType(),
    content: failed ? null : event.getContent(),
    encrypted,
    decrypted: encrypted && !failed,
    shield: null,
  };
  if (failed) out.decryption_error = event.decryptionFailureReason ?? "UNKNOWN_ERROR";
  if (encrypted && !failed) {
    const info = await crypto.getEncryptionInfoForEvent(event);
    if (info) {
      out.shield = {
        colour: nameOf(cryptoApi.EventShieldColour, info.shieldColour),
        reason: nameOf(cryptoApi.EventShieldReason, info.shieldReason),
      };
    }
  }
  return out;
}

const isMessage = (d) => d.type === "m.room.message" || d.type === "m.room.encrypted";

/**
 * The first message from `sender` whose body contains `contains`.
 *
 * A decrypted match wins. Without `contains`, a final decryption failure (say, an unsigned
 * sender in "signed" mode) is also an answer. A failure that may still heal (missing room key)
 * is only returned once the timeout has passed, so the caller sees why, not just "timeout".
 */
async function waitFor({ room_id, sender, contains, timeout_ms = 30000 }) {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const described = await Promise.all((seen.get(room_id) ?? []).map(describe));
    const candidates = described.filter((d) => isMessage(d) && (!sender || d.sender === sender));
    const hit = candidates.find(
      (d) => !d.decryption_error && (!contains || String(d.content?.body ?? "").includes(contains)),
    );
    if (hit) return hit;
    const failures = candidates.filter((d) => d.decryption_error);
    const final = failures.find((d) => !PENDING_FAILURES.has(d.decryption_error));
    if (final && !contains) return final;
    if (Date.now() > deadline) {
      if (failures.length) return failures[failures.length - 1];
      throw new Error(`no message from ${sender ?? "anyone"} matching within ${timeout_ms} ms`);
    }
    await sleep(100);
  }
}

// --- attachments (AES-CTR as in the spec's encrypted-attachment format) -----------------------

const b64 = (buf) => Buffer.from(buf).toString("base64").replace(/=+$/, "");
const b64url = (buf) => Buffer.from(buf).toString("base64url");

async function encryptAttachment(plain) {
  const key = await webcrypto.subtle.generateKey({ name: "AES-CTR", length: 256 }, true, [
    "encrypt",
    "decrypt",
  ]);
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  const cipher = Buffer.from(
    await webcrypto.subtle.encrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, plain),
  );
  const jwk = await webcrypto.subtle.exportKey("jwk", key);
  const info = {
    v: "v2",
    key: { kty: "oct", key_ops: ["encrypt", "decrypt"], alg: "A256CTR", k: jwk.k, ext: true },
    iv: b64(iv),
    hashes: { sha256: b64(createHash("sha256").update(cipher).digest()) },
  };
  return { cipher, info };
}

async function decryptAttachment(file) {
  const url = client.mxcUrlToHttp(file.url, undefined, undefined, undefined, false, true, true);
  const res = await fetch(url, { headers: { Authorization: `Bearer ${client.getAccessToken()}` } });
  if (!res.ok) throw new Error(`download failed: HTTP ${res.status}`);
  const cipher = Buffer.from(await res.arrayBuffer());
  if (b64(createHash("sha256").update(cipher).digest()) !== file.hashes.sha256.replace(/=+$/, "")) {
    throw new Error("attachment sha256 mismatch");
  }
  const key = await webcrypto.subtle.importKey("jwk", file.key, { name: "AES-CTR" }, false, [
    "decrypt",
  ]);
  const iv = Buffer.from(file.iv, "base64");
  return Buffer.from(
    await webcrypto.subtle.decrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, cipher),
  );
}

// --- commands --------------------------------------------------------------------------------

async function joinedRoom(roomId) {
  return until(() => client.getRoom(roomId)?.getMyMembership() === "join", 30000, "room join");
}

const commands = {
  async whoami() {
    return { user_id: login.user_id, device_id: login.device_id };
  },
  async join({ room_id }) {
    await client.joinRoom(room_id);
    await joinedRoom(room_id);
    return { room_id };
  },
  async send({ room_id, body }) {
    await joinedRoom(room_id);
    // In "signed" mode the SDK itself withholds the room key from devices not cross-signed.
    const { event_id } = await client.sendMessage(room_id, { msgtype: "m.text", body });
    return { event_id };
  },
  async send_file({ room_id, path, data_b64, name, mimetype = "application/octet-stream", msgtype = "m.file" }) {
    await joinedRoom(room_id);
    const plain = path ? await readFile(path) : Buffer.from(data_b64, "base64");
    const { cipher, info } = await encryptAttachment(plain);
    const { content_uri } = await client.uploadContent(cipher, {
      type: "application/octet-stream",
      includeFilename: false,
    });
    const content = {
      msgtype,
      body: name ?? "file",
      info: { mimetype, size: plain.length },
      file: { ...info, url: content_uri },
    };
    const { event_id } = await client.sendMessage(room_id, content);
    return { event_id };
  },
  async download({ file }) {
    return { data_b64: (await decryptAttachment(file)).toString("base64") };
  },
  wait: waitFor,
  async events({ room_id }) {
    return { events: await Promise.all((seen.get(room_id) ?? []).map(describe)) };
  },
  async stop() {
    await shutdown();
    // Exit once the reply below has been written.
    setImmediate(() => emitLine("", () => process.exit(0)));
    return {};
  },
};

const inFlight = new Set();
let stopping = null;
function shutdown() {
  // Commands sent before "stop" finish first (waits are capped by their own timeouts).
  stopping ??= Promise.allSettled([...inFlight]).then(() => client.stopClient());
  return stopping;
}

async function handle(line) {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    emit({ ok: false, error: "invalid JSON" });
    return;
  }
  const run = commands[msg.cmd];
  try {
    if (!run) throw new Error(`unknown command ${msg.cmd}`);
    if (stopping) throw new Error("client is stopping");
    const pending = run(msg);
    if (msg.cmd !== "stop") inFlight.add(pending);
    try {
      emit({ id: msg.id, ok: true, result: await pending });
    } finally {
      inFlight.delete(pending);
    }
  } catch (e) {
    emit({ id: msg.id, ok: false, error: String(e?.message ?? e) });
  }
}

const sdkPackage = new URL("./node_modules/matrix-js-sdk/package.json", import.meta.url);
const sdkVersion = JSON.parse(await readFile(sdkPackage, "utf8")).version;
emit({
  event: "ready",
  user_id: login.user_id,
  device_id: login.device_id,
  isolation: args.isolation,
  versions: { sdk: sdkVersion, crypto: crypto.getVersion(), node: process.version },
});
createInterface({ input: process.stdin })
  .on("line", (line) => line.trim() && handle(line))
  .on("close", () => shutdown().then(() => process.exit(0)));
