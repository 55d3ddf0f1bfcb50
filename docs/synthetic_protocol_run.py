"""The synthetic-protocol run behind docs/synthetic_protocol.png and docs/synthetic_protocol_results.json.

The configs as committed (configs/synthetic_cpu.yaml, configs/ablation_no_fitting.yaml: 1500 steps, lr 3e-4),
2 training seeds, full loop vs no-fitting ablation, plus 3D joints for 25% of the bundles (seed 0); two arms
at a time with one torch thread each (a 2-core machine). Run: ``python docs/synthetic_protocol_run.py OUT``.
"""
import sys

from mvspin.learning.synthetic_protocol import SyntheticProtocolConfig, run

if __name__ == "__main__":
    config = SyntheticProtocolConfig(training_seeds=[0, 1], partial_3d_seeds=[0], partial_3d_share=0.25,
                                     static_fit_iterations=100, parallel_arms=2, threads_per_arm=1)
    results = run(sys.argv[1] if len(sys.argv) > 1 else "synthetic_protocol", config)
    print(results.table())
    print(results.plot)
