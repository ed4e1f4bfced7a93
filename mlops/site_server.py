"""Serve the web app locally the way Netlify does: static files + /api/predict proxied to the Lambda.

The proxy mirrors the Netlify Function (site/netlify/functions/predict.mjs): the browser talks to
its own origin only, and PREDICT_URL (the Lambda Function URL) stays on the server side.

    python -m mlops.site_server --port 8000 --predict-url http://127.0.0.1:8090/
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parents[1] / "site" / "public"
MAX_BODY = 64 * 1024


def create_app(predict_url: str, site_dir: Path = SITE_DIR, timeout_s: float = 15.0):
    import aiohttp
    from aiohttp import web

    async def predict(request: web.Request) -> web.Response:
        if request.method != "POST":
            return web.json_response({"error": {"code": "method_not_allowed", "message": "use POST"}}, status=405)
        body = await request.read()
        if len(body) > MAX_BODY:
            return web.json_response({"error": {"code": "payload_too_large", "message": "text too long"}}, status=413)
        try:
            async with request.app["session"].post(predict_url, data=body,
                                                   headers={"Content-Type": "application/json"}) as r:
                return web.Response(body=await r.read(), status=r.status, content_type="application/json")
        except aiohttp.ClientConnectionError:
            return web.json_response({"error": {"code": "backend_unavailable",
                                                "message": "the prediction service is not reachable"}}, status=502)
        except TimeoutError:
            return web.json_response({"error": {"code": "timeout", "message": "the prediction service timed out"}},
                                     status=504)

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(site_dir / "index.html")

    async def on_startup(app):
        app["session"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def on_cleanup(app):
        await app["session"].close()

    app = web.Application()
    app.router.add_route("*", "/api/predict", predict)
    app.router.add_get("/", index)
    app.router.add_static("/", site_dir)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def main(argv=None) -> int:
    from aiohttp import web

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_SITE_PORT", "8000")))
    parser.add_argument("--predict-url", default=os.environ.get("PREDICT_URL", "http://127.0.0.1:8090/"))
    args = parser.parse_args(argv)
    if not (SITE_DIR / "index.html").exists():
        print(f"error: {SITE_DIR / 'index.html'} not found", file=sys.stderr)
        return 2
    web.run_app(create_app(args.predict_url), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
