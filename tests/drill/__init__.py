"""The cluster drill (issue 18): docker-compose.yml's roles as local processes on the
three-broker cluster, killed in turn while mail flows, compared with an undisturbed run."""
