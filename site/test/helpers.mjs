// A fake predict Lambda on a loopback port: records the bodies it gets, answers what it is told.
import http from "node:http";

export function fakeLambda({ status = 200, body = {}, raw = null, delayMs = 0 } = {}) {
  return new Promise((resolve) => {
    const seen = [];
    const server = http.createServer((req, res) => {
      let data = "";
      req.on("data", (c) => (data += c));
      req.on("end", () => {
        seen.push({ method: req.method, headers: req.headers, body: data });
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
