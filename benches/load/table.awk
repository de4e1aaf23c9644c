# Formats results.tsv as a Markdown table. Each figure is followed by its ratio to HAProxy and
# to nginx in the same scenario and thread count: (xH / xN). For req/s higher is better; for
# latency, CPU and memory lower is better.
function ratio(v, base) { return (base > 0) ? sprintf("%.2f", v / base) : "-" }
{
    key = $1 "/" $2
    n++; row[n] = $0
    if ($3 == "haproxy") { for (i = 4; i <= 11; i++) h[key, i] = $i }
    if ($3 ~ /^nginx/) { for (i = 4; i <= 11; i++) g[key, i] = $i }
}
END {
    print "| scenario | threads | proxy | req/s | p50 ms | p99 ms | p99.9 ms | errors | non-2xx | CPU s/100k req | peak RSS MiB |"
    print "|---|---|---|---|---|---|---|---|---|---|---|"
    for (r = 1; r <= n; r++) {
        split(row[r], f, "\t")
        key = f[1] "/" f[2]
        line = "| " f[1] " | " f[2] " | " f[3]
        for (i = 4; i <= 11; i++) {
            v = f[i]
            shown = (i >= 5 && i <= 7) ? sprintf("%.2f", v / 1000) : v
            if (i == 8 || i == 9) { line = line " | " shown; continue }
            line = line " | " shown " (" ratio(v, h[key, i]) " / " ratio(v, g[key, i]) ")"
        }
        print line " |"
    }
}
