import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The bookie's Prometheus metrics, registered on the ServiceHost's registry. */
export class BookieMetrics {
  readonly adds: Counter<'result'>;
  readonly addBytes: Counter;
  readonly addLatency: Histogram;
  readonly fsyncs: Counter;
  readonly fsyncLatency: Histogram;
  readonly groupRecords: Histogram;
  readonly journalBytes: Counter;
  readonly segmentWriteBack: Histogram;
  readonly reads: Counter<'result'>;
  readonly readBytes: Counter;
  readonly inFlightAdds: Gauge;
  readonly readOnly: Gauge;
  readonly diskUsage: Gauge;
  readonly gcDeletedLedgers: Counter;
  readonly gcFreedBytes: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.adds = new Counter({ name: 'bookie_adds_total', help: 'Adds answered, by result (ok or the error code)', labelNames: ['result'], registers });
    this.addBytes = new Counter({ name: 'bookie_add_bytes_total', help: 'Payload bytes of acknowledged adds', registers });
    this.addLatency = new Histogram({
      name: 'bookie_add_latency_seconds', help: 'From an add read off the stream to its acknowledgement',
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1], registers,
    });
    this.fsyncs = new Counter({ name: 'bookie_journal_fsyncs_total', help: 'Journal group commits (one O_DSYNC write each)', registers });
    this.fsyncLatency = new Histogram({
      name: 'bookie_journal_commit_seconds', help: 'The durable (O_DSYNC) write of one journal group',
      buckets: [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25], registers,
    });
    this.groupRecords = new Histogram({
      name: 'bookie_journal_group_records', help: 'Records in one journal group commit', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024], registers,
    });
    this.journalBytes = new Counter({ name: 'bookie_journal_bytes_total', help: 'Bytes written to the journal', registers });
    this.segmentWriteBack = new Histogram({
      name: 'bookie_segment_writeback_seconds', help: 'Background fdatasync of a segment\'s files, every segmentWriteBackBytes written',
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1], registers,
    });
    this.reads = new Counter({ name: 'bookie_reads_total', help: 'Read calls, by result', labelNames: ['result'], registers });
    this.readBytes = new Counter({ name: 'bookie_read_bytes_total', help: 'Payload bytes read', registers });
    this.inFlightAdds = new Gauge({ name: 'bookie_in_flight_adds', help: 'Adds received and not yet answered', registers });
    this.readOnly = new Gauge({ name: 'bookie_read_only', help: '1 while the bookie refuses adds for lack of disk', registers });
    this.diskUsage = new Gauge({ name: 'bookie_disk_usage_ratio', help: 'Used fraction of the data directory\'s file system', registers });
    this.gcDeletedLedgers = new Counter({ name: 'bookie_gc_deleted_ledgers_total', help: 'Ledgers whose local data GC removed', registers });
    this.gcFreedBytes = new Counter({ name: 'bookie_gc_freed_bytes_total', help: 'Bytes GC removed', registers });
  }
}
