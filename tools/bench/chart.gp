# make bench's chart, from the VM table's CSV (tools/bench/report.py):
# TCP throughput both ways and TCP request/response time per configuration,
# median bars (x:y:ylow:yhigh:width) with min-max whiskers, log scale (native and the emulated
# host's VMs differ by orders of magnitude). Rows that failed say so.
#   gnuplot -e "csv='results.csv'; png='chart.png'; subtitle='...'" tools/bench/chart.gp
if (!exists("subtitle")) subtitle = ""
set datafile separator ","
set datafile columnheaders
set terminal pngcairo size 1200,1000 font "sans,10"
set output png
set style fill solid 0.75 border -1
set logscale y
set grid ytics mytics lc rgb "#dddddd"
set xtics nomirror noenhanced rotate by -25 left  # ten rows: names side by side collide
set key top right noenhanced
stats csv using 0 nooutput
set xrange [-0.6:STATS_records - 0.4]
failed(col) = strcol("status") eq "failed" ? "failed" : ""
num(name) = strcol(name) eq "failed" || strcol(name) eq "n/a" ? NaN : column(name)
set multiplot layout 2,1 title "make bench: minivmm vs QEMU vs native\n".subtitle noenhanced

set title "TCP stream (iperf3)"
set ylabel "Mbit/s"
plot csv using 0:(1):xtic(1) with points pt -1 notitle, \
     '' using ($0-0.19):(num("g2h_mbps")):(num("g2h_mbps_min")):(num("g2h_mbps_max")):(0.36) \
        with boxerrorbars lc rgb "#4878a8" title "guest->host", \
     '' using ($0+0.19):(num("h2g_mbps")):(num("h2g_mbps_min")):(num("h2g_mbps_max")):(0.36) \
        with boxerrorbars lc rgb "#e0a030" title "host->guest", \
     '' using ($0-0.19):(num("g2h_mbps")):(sprintf("%.0f", num("g2h_mbps"))) with labels offset 0,0.7 notitle, \
     '' using ($0+0.19):(num("h2g_mbps")):(sprintf("%.0f", num("h2g_mbps"))) with labels offset 0,0.7 notitle, \
     '' using 0:(2):(failed(0)) with labels tc rgb "red" notitle

set title "TCP request/response (sockperf ping-pong), lower is better"
set ylabel "usec per transaction"
plot csv using 0:(1):xtic(1) with points pt -1 notitle, \
     '' using 0:(num("rr_usec")):(num("rr_usec_min")):(num("rr_usec_max")):(0.5) \
        with boxerrorbars lc rgb "#58a060" notitle, \
     '' using 0:(num("rr_usec")):(sprintf("%.1f", num("rr_usec"))) with labels offset 0,0.7 notitle, \
     '' using 0:(2):(failed(0)) with labels tc rgb "red" notitle
unset multiplot
