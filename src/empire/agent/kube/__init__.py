"""The Kubernetes API client of the agent, over httpx: cluster configuration (`kubeconfig`: in-cluster,
kubeconfig files, exec credential plugins in `kubeexec`, mTLS, token rotation), one classified client
(`kubeapi`), API discovery of scalable kinds (`discovery`), the scaling executor
(`scaler.KubernetesScaler`: any kind's scale subresource), Events on workloads (`events`), the check
for other autoscalers (`conflicts`), the Secret reader (`kubesecrets`) and the dry-run pretend
cluster (`dryrun`). Why hand-written and not a client library: see `kubeconfig`'s docstring."""
