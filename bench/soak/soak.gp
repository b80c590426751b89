set datafile separator ','
set key autotitle columnhead
set terminal pngcairo size 1200,900
set output 'soak.png'
set multiplot layout 2,1 title 'Causeway soak: primary + 2 replicas, chaos every few seconds'
set xlabel 'minutes'
set ylabel 'RSS (MiB)'
set y2label 'fds, connections'
set y2tics
set ytics nomirror
set key outside right
plot 'soak.csv' using 1:($2/1024) with linespoints title 'RSS MiB', '' using 1:3 axes x1y2 with linespoints title 'fds', '' using 1:4 axes x1y2 with linespoints title 'server conns', '' using 1:5 axes x1y2 with linespoints title 'client conns'
unset y2tics
unset y2label
set ylabel 'count (cumulative, log)'
set logscale y
plot 'soak.csv' using 1:($6+1) with linespoints title 'acked writes', '' using 1:($7+1) with linespoints title 'write errors', '' using 1:($8+1) with linespoints title 'read errors', '' using 1:($10+1) with linespoints title 'pgbench xacts', '' using 1:($11+1) with linespoints title 'pgbench failed rounds', '' using 1:($12+1) with linespoints title 'chaos events'
unset multiplot
