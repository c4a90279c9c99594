"""Write ansible-test's integration_config.yml from a running lab's lab.json (stdout)."""
import json
import sys


def main(path):
    with open(path) as handle:
        lab = json.load(handle)
    values = {
        "kong_admin_url": lab["admin_url"],
        "kong_admin_urls": lab.get("admin_urls") or [lab["admin_url"]],
        "kong_proxy_url": lab.get("proxy_url"),
        "lab_lb_url": lab.get("lb_url"),
        "lab_prometheus_url": lab.get("prometheus_url"),
        "lab_kubeconfig": lab.get("kubeconfig"),
        "lab_json": path,
        # real Kong or the simulator; traditional, hybrid (admin URL = the control plane) or dbless
        "kong_engine": lab.get("kong_engine", "simulator"),
        "kong_mode": lab.get("kong_mode", "traditional"),
        "kong_balancer_urls": lab.get("kong_balancer_urls") or lab.get("admin_urls") or [lab["admin_url"]],
    }
    # JSON is valid YAML; ansible-test reads this file as YAML.
    sys.stdout.write(json.dumps(values, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
