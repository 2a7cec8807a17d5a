#!/usr/bin/env bash
# Run the i-PI socket example in the current directory:
#
#   python /path/to/examples/ipi/prepare.py [MODEL.pt]   # writes init.xyz, model.pt
#   bash /path/to/examples/ipi/run.sh [cpu|cuda]
#
# i-PI integrates the dynamics; `i-pi-py_driver -m metatomic` evaluates the
# model and talks to i-PI over the UNIX socket /tmp/ipi_metatomic-water.
set -euo pipefail

device=${1:-cpu}
example=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

cp "$example/input.xml" input.xml
rm -f /tmp/ipi_metatomic-water

i-pi input.xml > i-pi.log &
ipi=$!
until [ -S /tmp/ipi_metatomic-water ]; do
    sleep 0.5
done

i-pi-py_driver -u -a metatomic-water -m metatomic \
    -o template=init.xyz,model=model.pt,device="$device"
wait "$ipi"
cat simulation.out
