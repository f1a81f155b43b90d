# Sourced by the benchmark scripts: one file of Nexmark bids written by weir.
#
#   bids_file BIN ROWS FORMAT WORKDIR DEST
#
# Writes the first ROWS bids of the Nexmark sequence (92% of events are bids; the generator's
# event count is rounded so that ROWS or one fewer come out) as one FORMAT file (json, csv or
# parquet) at DEST, using WORKDIR/gen for the job's output.
bids_file() {
    local bin="$1" rows="$2" format="$3" work="$4" dest="$5"
    local events=$(( (rows * 100 + 91) / 92 ))
    cat > "$work/gen.sql" <<SQL
SET 'parallelism' = '1';
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING)
WITH ('connector' = 'nexmark', 'nexmark.events' = '$events');
CREATE TABLE out (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP(3), extra STRING)
WITH ('connector' = 'filesystem', 'path' = '$work/gen', 'format' = '$format',
      'sink.rolling-policy.file-size' = '100GB');
INSERT INTO out SELECT * FROM bid LIMIT $rows;
SQL
    "$bin" run --quiet "$work/gen.sql" >&2
    local files
    mapfile -t files < <(find "$work/gen" -type f ! -name '.*')
    if [[ ${#files[@]} -ne 1 ]]; then
        echo "bids_file: expected one file in $work/gen, found ${#files[@]}" >&2
        return 1
    fi
    mv "${files[0]}" "$dest"
}
