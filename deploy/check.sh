#!/usr/bin/env bash
# Checks the deployment files against Prometheus and against docs/metrics.md:
#   1. promtool check rules: alerts.yml is valid;
#   2. promtool test rules: each alert fires on synthetic series where it
#      should, and not on healthy look-alikes (alerts_test.yml);
#   3. every PromQL expression of the Grafana dashboard parses (each is
#      checked as a recording rule, with the dashboard's variables filled in);
#   4. every crew_ metric the dashboard and the rules use is one that
#      docs/metrics.md lists, or the _bucket, _sum or _count series of one it
#      lists as a histogram.
# Needs promtool (Debian: apt-get install prometheus) and python3. Without
# promtool, `CREW_DEPLOY_NO_PROMTOOL=1 deploy/check.sh` runs check 4 alone;
# `cargo test -p crew-cli --test deploy` runs it too, with more.
set -euo pipefail
cd "$(dirname "$0")/.."

dashboard=deploy/grafana/crew.json
rules=deploy/prometheus/alerts.yml
rules_test=deploy/prometheus/alerts_test.yml
docs=docs/metrics.md
failed=0

if [ "${CREW_DEPLOY_NO_PROMTOOL:-}" = 1 ]; then
    echo "== promtool checks skipped (CREW_DEPLOY_NO_PROMTOOL=1)"
else
    if ! command -v promtool >/dev/null; then
        echo "promtool is not installed (Debian: apt-get install prometheus)" >&2
        exit 1
    fi
    echo "== promtool check rules ${rules}"
    promtool check rules "${rules}"

    echo "== promtool test rules ${rules_test}"
    promtool test rules "${rules_test}"

    echo "== the dashboard's expressions parse"
    tmp=$(mktemp -d)
    trap 'rm -rf "${tmp}"' EXIT
    python3 - "${dashboard}" >"${tmp}/dashboard_rules.yml" <<'EOF'
import json, sys

# Grafana's variables, filled with values PromQL accepts where they stand.
fill = {"$__rate_interval": "1m", "$pipeline": "pixels", "$instance": ".*"}
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
count = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"]
        for name, value in fill.items():
            expr = expr.replace(name, value)
        count += 1
        print(f"      - record: dashboard:expr_{count}")
        print(f"        expr: {json.dumps(expr)}")
if count == 0:
    sys.exit("the dashboard has no expressions")
EOF
    promtool check rules "${tmp}/dashboard_rules.yml"
fi

echo "== every crew_ metric used is in ${docs}"
# The rows of docs/metrics.md's tables, as "name type" lines:
# | `crew_events_read_total` | counter | ... |
documented=$(awk -F'|' '
    $2 ~ /^ *`crew_[a-z0-9_]+` *$/ {
        name = $2; type = $3
        gsub(/[ `]/, "", name); gsub(/ /, "", type)
        print name, type
    }' "${docs}" | sort -u)
if [ -z "${documented}" ]; then
    echo "no metric table found in ${docs} (rows like | \`crew_name\` | type | ...)" >&2
    exit 1
fi
# A name is a crew_ one where it starts a word: `xcrew_not` is not
# (tests/deploy.rs's metric_names draws the same line).
used=$({ grep -ohE '(^|[^A-Za-z0-9_])crew_[a-z0-9_]+' "${dashboard}" "${rules}" "${rules_test}" || true; } |
    grep -oE 'crew_[a-z0-9_]+' | sort -u)
if [ -z "${used}" ]; then
    echo "no crew_ metric found in ${dashboard}, ${rules} or ${rules_test}" >&2
    exit 1
fi
# Documented as itself, or a histogram's _bucket, _sum or _count series when
# docs/metrics.md lists the histogram as one (tests/deploy.rs's
# is_documented is the same rule).
is_documented() {
    local name=$1 suffix
    if awk -v name="${name}" '$1 == name { found = 1 } END { exit !found }' <<<"${documented}"; then
        return 0
    fi
    for suffix in _bucket _sum _count; do
        if [ "${name%"${suffix}"}" != "${name}" ] &&
            awk -v name="${name%"${suffix}"}" '$1 == name && $2 == "histogram" { found = 1 } END { exit !found }' <<<"${documented}"; then
            return 0
        fi
    done
    return 1
}
unknown=()
for name in ${used}; do
    if ! is_documented "${name}"; then
        unknown+=("${name}")
    fi
done
if [ "${#unknown[@]}" -gt 0 ]; then
    echo "metrics used in deploy/ but not listed in ${docs} (a histogram's _bucket, _sum and _count count only for a histogram):" >&2
    printf '  %s\n' "${unknown[@]}" >&2
    failed=1
else
    echo "$(wc -w <<<"${used}") metric names used, all documented"
fi
exit "${failed}"
