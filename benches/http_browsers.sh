#!/usr/bin/env bash
# Load bench of tracker-http's browser routes against a bare axum handler.
#
# Like benches/http.sh (and sharing benches/http_lib.sh), in alternating
# rounds on 127.0.0.1:
#   POST /api/event  a Plausible pageview as text/plain, pages rotating over
#                    1000, a new user agent per request (so a new derived
#                    visitor: salt, SipHash, bot rules, record)
#   GET  /count      the GoatCounter pixel, p=/page/N with a Referer, a new
#                    user agent per request
# The baseline (tracker-http/examples/bare.rs) parses the same body or
# query and answers the same 202 `ok` or GIF, doing nothing else.
#
# Usage: benches/http_browsers.sh   (DURATION, CONNECTIONS, ROUNDS, PIN as http.sh)
set -euo pipefail

SERVICE_PORT=${SERVICE_PORT:-18082}
BARE_PORT=${BARE_PORT:-18083}
# shellcheck source=benches/http_lib.sh
source "$(dirname "$0")/http_lib.sh"

cat >"$WORK/plausible.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"n":"pageview","u":"https://example.com/page/%d","d":"example.com","r":null,"v":36}', n % 1000)
  local ua = string.format("Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.%d", n)
  return wrk.format("POST", "/api/event", { ["Content-Type"] = "text/plain", ["User-Agent"] = ua }, body)
end
LUA
cat >"$WORK/count.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  local ua = string.format("Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.%d", n)
  return wrk.format("GET", "/count?p=%2Fpage%2F" .. (n % 1000) .. "&t=Page&rnd=" .. n,
    { ["User-Agent"] = ua, ["Referer"] = "https://example.com/" })
end
LUA

label() { if [[ "$1" == plausible ]]; then echo "POST /api/event"; else echo "GET /count"; fi; }
run_rounds plausible count
report "tracker-http browser routes vs bare axum" label plausible count
