// Readiness probe for kafka.sh: waits until the broker really answers Kafka requests
// (describeCluster + listTopics through the official AdminClient), not just until its
// port accepts TCP, because the listener opens before the broker has caught up with the
// metadata log. Usage: java -cp 'lib/*:classes' Ready HOST:PORT SECONDS [PID [CLUSTER_ID]]; with
// PID it gives up at once when that process (the broker) has died instead of waiting out the
// timeout; with CLUSTER_ID it refuses a broker of another cluster answering on that port.
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;

public class Ready {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "3000");
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        ProcessHandle broker = args.length > 2
                ? ProcessHandle.of(Long.parseLong(args[2])).orElse(null) : null;
        if (args.length > 2 && broker == null) {
            System.err.println("broker process " + args[2] + " is not running");
            System.exit(1);
        }
        String last = "no answer";
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                if (broker != null && !broker.isAlive()) {
                    System.err.println("broker process " + args[2] + " exited during start-up");
                    System.exit(1);
                }
                try {
                    DescribeClusterResult cluster = admin.describeCluster();
                    String id = cluster.clusterId().get(5, TimeUnit.SECONDS);
                    int nodes = cluster.nodes().get(5, TimeUnit.SECONDS).size();
                    admin.listTopics().names().get(5, TimeUnit.SECONDS);
                    if (args.length > 3 && !args[3].equals(id)) {
                        System.err.println("another Kafka (cluster " + id + ", not " + args[3]
                                + ") answers on " + bootstrap);
                        System.exit(1);
                    }
                    if (nodes > 0) {
                        System.out.println("broker ready: cluster " + id + ", " + nodes + " node(s)");
                        return;
                    }
                    last = "no nodes in the cluster metadata yet";
                } catch (Exception e) {
                    last = e.toString();
                }
                Thread.sleep(500);
            }
        }
        System.err.println("broker at " + bootstrap + " did not answer in time: " + last);
        System.exit(1);
    }
}
