"""The Kubernetes API client of the agent, over httpx: cluster configuration (`kubeconfig`: in-cluster,
kubeconfig files, exec credential plugins in `kubeexec`, mTLS, token rotation), the scaling executor
(`scaler.KubernetesScaler`: the scale subresource), the Secret reader (`kubesecrets`) and the dry-run
pretend cluster (`dryrun`). Why hand-written and not a client library: see `kubeconfig`'s docstring."""
