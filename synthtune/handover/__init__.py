"""The handover phase: what a run gives a colleague: a merged model with its card, a dataset with its
card, and one HTML report (synthtune.handover.export, .model_card, .dataset_card, .report; the run's
own files are read through .run_files, so every figure in them is a figure the run measured)."""
