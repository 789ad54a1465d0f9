// Package deploy holds the deployment files of edigw — the Dockerfile,
// deploy/compose.yaml, the Kubernetes manifests, the systemd unit and their
// gateway.yaml files — and, in deploy_test.go, the static checks CI runs on
// them (CI does not run docker or a cluster). It has no Go API.
package deploy
