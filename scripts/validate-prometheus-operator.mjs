// Validates the Prometheus Operator resources (ServiceMonitor, PrometheusRule)
// of the given Kubernetes manifests against the operator's CRD schemas, as
// compiled by the npm package @kubernetes-models/prometheus-operator. Called
// by scripts/validate-deploy.sh, which installs it; exit status 1 on any
// invalid resource, or when the files hold none.
import fs from "node:fs";
import yaml from "js-yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const kinds = { ServiceMonitor, PrometheusRule };
let bad = 0;
let seen = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || doc.apiVersion !== "monitoring.coreos.com/v1") continue;
    const Kind = kinds[doc.kind];
    const name = `${file}: ${doc.kind} ${doc.metadata?.name}`;
    if (!Kind) {
      console.error(`${name}: no schema for this kind here`);
      bad++;
      continue;
    }
    seen++;
    try {
      new Kind(doc).validate();
      console.log(`${name}: valid`);
    } catch (e) {
      console.error(`${name}: ${e.message}`);
      bad++;
    }
  }
}
if (seen === 0) {
  console.error("no Prometheus Operator resources in the files given");
  process.exit(1);
}
process.exit(bad ? 1 : 0);
