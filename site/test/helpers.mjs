// A fake predict Lambda on a loopback port: records the bodies it gets, answers what it is told.
import crypto from "node:crypto";
import http from "node:http";

export function fakeLambda({ status = 200, body = {}, raw = null, delayMs = 0 } = {}) {
  return new Promise((resolve) => {
    const seen = [];
    const server = http.createServer((req, res) => {
      let data = "";
      req.on("data", (c) => (data += c));
      req.on("end", () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body: data });
        setTimeout(() => {
          res.writeHead(status, { "Content-Type": raw === null ? "application/json" : "text/html" });
          res.end(raw ?? JSON.stringify(body));
        }, delayMs);
      });
    });
    server.listen(0, "127.0.0.1", () => resolve({
      server, seen, url: `http://127.0.0.1:${server.address().port}/`,
      close: () => new Promise((done) => { server.closeAllConnections(); server.close(done); }),
    }));
  });
}

/** Listen on a free loopback port; resolves to the base URL. */
export function listen(server) {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

export function close(server) {
  return new Promise((done) => { server.closeAllConnections(); server.close(done); });
}

const sha256 = (data) => crypto.createHash("sha256").update(data, "utf8").digest("hex");
const hmac = (key, data) => crypto.createHmac("sha256", key).update(data, "utf8").digest();
const rfc3986 = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

/**
 * A SigV4 verifier written from AWS's specification ("Create a signed AWS API request"), independent of
 * the signing library: recomputes the signature of a received request ({method, url, headers as node
 * lower-cases them, body}) with the secret key and compares. Paths are taken as sent (ours are "/").
 */
export function verifySigV4({ method, url, headers, body }, secretAccessKey) {
  const auth = headers.authorization ?? "";
  const match = auth.match(/^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/);
  if (!match) return { ok: false, why: `not a SigV4 Authorization header: ${JSON.stringify(auth)}` };
  const [, accessKeyId, date, region, service, signedHeaders, signature] = match;
  const amzDate = headers["x-amz-date"];
  if (!amzDate?.startsWith(date)) return { ok: false, why: "x-amz-date does not match the credential scope" };
  const [path, rawQuery = ""] = url.split("?");
  const query = rawQuery.split("&").filter(Boolean).map((p) => p.split("=").map((x) => rfc3986(decodeURIComponent(x ?? ""))))
    .sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1)).map(([k, v = ""]) => `${k}=${v}`).join("&");
  const names = signedHeaders.split(";");
  const canonicalHeaders = names.map((n) => `${n}:${String(headers[n] ?? "").trim().replace(/\s+/g, " ")}\n`).join("");
  const payloadHash = sha256(body);
  if (headers["x-amz-content-sha256"] && headers["x-amz-content-sha256"] !== payloadHash) {
    return { ok: false, why: "x-amz-content-sha256 is not the body's hash" };
  }
  const canonicalRequest = [method, path, query, canonicalHeaders, signedHeaders, payloadHash].join("\n");
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256(canonicalRequest)].join("\n");
  const key = ["aws4_request"].reduce(
    (k, part) => hmac(k, part), hmac(hmac(hmac(`AWS4${secretAccessKey}`, date), region), service));
  const expected = hmac(key, stringToSign).toString("hex");
  return { ok: expected === signature, why: expected === signature ? "" : "signature mismatch", accessKeyId, region, service,
    signedHeaders: names };
}
