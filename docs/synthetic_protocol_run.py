"""The synthetic-protocol run behind docs/synthetic_protocol.png and docs/synthetic_protocol_results.json.

The protocol's defaults of commit 55a17bf (:class:`mvspin.learning.synthetic_protocol.SyntheticProtocolConfig`),
pinned here since the defaults moved on: the configs of that time (dropout 0.5, a constant learning rate, no
gradient clipping; set below over today's configs), 500 steps, 3 training seeds x 2 data
seeds for the full loop and the ablation with 3D joints on every bundle; with 3D joints on 25% of the bundles
only training seed 0 of data seed 1 (the defaults run 3 seeds there: the session's CPU allowed one); two runs at a time with one torch thread each (a 2-core machine).
The same as ``mvspin experiment table7 --partial-3d-seeds 0 --overrides ... -o OUT`` with those overrides. Run: ``python docs/synthetic_protocol_run.py OUT``.
"""
import sys

from mvspin.learning.synthetic_protocol import SyntheticProtocolConfig, run

PINNED = ["optim.max_steps=500", "optim.checkpoint_every=100", "model.dropout=0.5", "optim.lr_schedule=constant",
          "optim.grad_clip=null"]

if __name__ == "__main__":
    results = run(sys.argv[1] if len(sys.argv) > 1 else "synthetic_protocol", SyntheticProtocolConfig(
        partial_3d_seeds=[0], overrides=PINNED))
    print(results.table())
    print(results.plot)
