"""What leaves the pipeline: firmware pushes (push, storage), Kubeflow submission and schedules (kfp_submit),
and the CI example (ci/). Used by the pipeline's CLI and components; uses only edgenas_keras of our code."""
