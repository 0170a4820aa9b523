"""Entry points for ``ray job submit`` (and KubeRay ``RayJob``), with their configs.

``python jobs/train.py --config jobs/configs/train.yaml`` runs the same code as ``raystx train``;
``jobs/entrypoints.py`` holds the exact command strings the manifests in ``cluster/`` submit.
"""
