#!/usr/bin/env bash
# Multi-node `bridge fit` with torchrun (static rendezvous): run it once on every machine, with the same arguments
# and that machine's NODE_RANK. Lightning sees torchrun's environment (TorchElasticEnvironment); docs/multinode.md.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash scripts/launch_multinode.sh \
#       --config configs/grpo/qwen2.5-1.5b.yaml --config configs/trainer/multinode.yaml     # on node 0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 bash scripts/launch_multinode.sh ...same...  # on node 1
#
# Variables: NNODES, NODE_RANK, MASTER_ADDR (node 0's address, reachable from every node) are required;
# MASTER_PORT (29500), GPUS_PER_NODE (the CUDA devices torch sees, else 1), PYTHON (python), and FSDP2 (1: also set
# the ModelParallelStrategy mesh, data_parallel_size = NNODES x GPUS_PER_NODE; 0 for a DDP trainer config).
# The arguments go to `bridge fit`; trainer.num_nodes, trainer.devices (and the mesh) follow them, from the variables.
set -euo pipefail

: "${NNODES:?set NNODES, the number of machines}"
: "${NODE_RANK:?set NODE_RANK, the index of this machine in 0..NNODES-1}"
: "${MASTER_ADDR:?set MASTER_ADDR, the address of node 0 that every node can reach}"
MASTER_PORT=${MASTER_PORT:-29500}
PYTHON=${PYTHON:-python}
GPUS_PER_NODE=${GPUS_PER_NODE:-$("$PYTHON" -c 'import torch; print(max(torch.cuda.device_count(), 1))')}
FSDP2=${FSDP2:-1}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # a checkout works without `pip install`

layout=(--trainer.num_nodes "$NNODES" --trainer.devices "$GPUS_PER_NODE")
if [[ "$FSDP2" == 1 ]]; then
  layout+=(--trainer.strategy.init_args.data_parallel_size "$((NNODES * GPUS_PER_NODE))")
fi

echo "node $NODE_RANK of $NNODES: $GPUS_PER_NODE processes, rendezvous at $MASTER_ADDR:$MASTER_PORT" >&2
exec "$PYTHON" -m torch.distributed.run \
  --nnodes "$NNODES" --nproc-per-node "$GPUS_PER_NODE" --node-rank "$NODE_RANK" \
  --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
  -m bridge_pl.train_cli fit "$@" "${layout[@]}"
