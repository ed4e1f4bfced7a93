// The site locally, as Netlify serves it: the static files of public/ with the headers of
// netlify.toml, and /api/predict and /api/feedback answered by the same Netlify Function handlers.
//   PREDICT_URL=http://127.0.0.1:8090/ node site/server.mjs [--port 8000] [--host 127.0.0.1] [--predict-url URL]
// Requests to the Lambda are signed (SigV4) only when PREDICT_ACCESS_KEY_ID and PREDICT_SECRET_ACCESS_KEY
// are set, as on Netlify; the local stack's Lambda adapter has no IAM, so it runs unsigned.
import http from "node:http";
import { readFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createHandler, predictTarget, MAX_BODY_BYTES } from "./netlify/functions/predict.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PUBLIC_DIR = path.join(HERE, "public");
export const NETLIFY_TOML = path.join(HERE, "..", "netlify.toml");
const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8", ".json": "application/json", ".svg": "image/svg+xml", ".png": "image/png",
  ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8",
};

/** The [[headers]] rules of a netlify.toml text: [{for, values: {name: value}}] (the subset Netlify documents). */
export function parseHeaderRules(toml) {
  const rules = [];
  let section = null;
  for (const [index, raw] of toml.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    if (line.startsWith("[")) {
      section = line;
      if (line === "[[headers]]") rules.push({ for: null, values: {} });
      continue;
    }
    if (section !== "[[headers]]" && section !== "[headers.values]") continue;
    const match = line.match(/^([A-Za-z0-9_-]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(#.*)?$/);
    if (!match) throw new Error(`netlify.toml line ${index + 1}: expected key = "value" in ${section}`);
    const rule = rules.at(-1);
    const value = JSON.parse(`"${match[2]}"`);
    if (section === "[[headers]]" && match[1] === "for") rule.for = value;
    else if (section === "[headers.values]") rule.values[match[1]] = value;
  }
  return rules.filter((r) => r.for);
}

/** The headers that apply to a request path (Netlify's `for` patterns: exact paths or a trailing *). */
export function headersFor(rules, urlPath) {
  const out = {};
  for (const rule of rules) {
    const hit = rule.for.endsWith("*") ? urlPath.startsWith(rule.for.slice(0, -1)) : urlPath === rule.for;
    if (hit) Object.assign(out, rule.values);
  }
  return out;
}

async function readBody(req, limit) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** An http.Server for the site; predictUrl and fetchImpl feed the function exactly as Netlify's env would. */
export function createSiteServer({ predictUrl, publicDir = PUBLIC_DIR, headerRules = [], fetchImpl = fetch, env = process.env } = {}) {
  const functionEnv = { ...env, PREDICT_URL: predictUrl ?? "" };
  const functions = {
    "/api/predict": createHandler({ env: functionEnv, fetchImpl }),
    "/api/feedback": createHandler({ env: functionEnv, fetchImpl, route: "feedback" }),
  };
  const root = path.resolve(publicDir);

  async function serveApi(req, res, url) {
    const body = ["GET", "HEAD"].includes(req.method) ? undefined : await readBody(req, MAX_BODY_BYTES + 1);
    if (body === null) {
      res.writeHead(413, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "payload_too_large", message: `the request is over ${MAX_BODY_BYTES / 1024} KiB` } }));
      return;
    }
    const request = new Request(url, { method: req.method, headers: { "Content-Type": "application/json" }, body });
    const response = await functions[url.pathname](request, { ip: req.socket.remoteAddress });
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.end(Buffer.from(await response.arrayBuffer()));
  }

  async function serveStatic(req, res, url) {
    if (!["GET", "HEAD"].includes(req.method)) {
      res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain" });
      res.end("method not allowed\n");
      return;
    }
    let file = null;
    try {
      file = path.resolve(root, "." + decodeURIComponent(url.pathname).replace(/\/$/, "/index.html"));
    } catch {
      file = null;  // a malformed %-escape: not a file we have
    }
    if (!file || !file.startsWith(root + path.sep)) {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found\n");
      return;
    }
    try {
      const data = await readFile(file);
      res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream", "Content-Length": data.length });
      res.end(req.method === "HEAD" ? undefined : data);
    } catch {
      res.writeHead(404, { "Content-Type": "text/plain" });
      res.end("not found\n");
    }
  }

  return http.createServer(async (req, res) => {
    const url = new URL(req.url, `http://${req.headers.host ?? "localhost"}`);
    for (const [name, value] of Object.entries(headersFor(headerRules, url.pathname))) res.setHeader(name, value);
    try {
      if (url.pathname in functions) await serveApi(req, res, url);
      else await serveStatic(req, res, url);
    } catch (err) {
      console.error(`site server: ${req.method} ${url.pathname} failed: ${err?.stack ?? err}`);
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: { code: "internal_error", message: "internal error" } }));
    }
  });
}

/** Command-line options (flags win over env vars); throws with a message saying what to fix. */
export function parseOptions(argv, env = process.env) {
  const opts = {
    host: env.HOST || "127.0.0.1",
    port: env.PORT || env.MLOPS_SITE_PORT || "8000",
    predictUrl: env.PREDICT_URL || "",
  };
  const names = { "--host": "host", "--port": "port", "--predict-url": "predictUrl" };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (flag === "--help" || flag === "-h") return { help: true };
    if (!(flag in names)) throw new Error(`unknown option ${argv[i]} (expected --host, --port, --predict-url)`);
    const value = inline ?? argv[++i];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    opts[names[flag]] = value;
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be an integer 0-65535, not ${JSON.stringify(opts.port)}`);
  if (opts.predictUrl) {
    const target = predictTarget({ PREDICT_URL: opts.predictUrl });
    if (target.error) throw new Error(target.error.replace("PREDICT_URL", "--predict-url / PREDICT_URL"));
  }
  return { ...opts, port };
}

async function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`error: ${err.message}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log("usage: PREDICT_URL=<predict Lambda URL> node server.mjs [--host 127.0.0.1] [--port 8000] [--predict-url URL]");
    return;
  }
  if (!opts.predictUrl) {
    console.error("warning: PREDICT_URL is not set: /api/predict answers 500 not_configured (set it to the predict Lambda's URL)");
  }
  const headerRules = parseHeaderRules(readFileSync(NETLIFY_TOML, "utf8"));
  const server = createSiteServer({ predictUrl: opts.predictUrl, headerRules });
  server.on("error", (err) => {
    console.error(`error: cannot listen on ${opts.host}:${opts.port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(opts.port, opts.host, () => {
    const { port } = server.address();
    const signing = process.env.PREDICT_ACCESS_KEY_ID ? "SigV4-signed" : "unsigned";
    console.log(`site on http://${opts.host}:${port}/  (/api/predict -> ${opts.predictUrl || "PREDICT_URL not set"}, ${signing})`);
  });
  const shutdown = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) await main();
