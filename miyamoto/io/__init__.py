"""The trio + h11 shell of Miyamoto: it carries out the node's actions and reports what happens.

Nothing here decides anything about tasks. `http_server` turns API bytes into `HttpRequest`s and
`HttpResponse`s back into bytes, `webhook_client` carries out `StartDelivery`, `runtime` feeds the
node its events and arms its timer, and `node` is the daemon: `python -m miyamoto.io.node`.
"""
