// Drives the live page of `weir serve` in headless Chromium (see scripts/browser-test.sh):
// the job is listed, the served table's rows and chart appear and keep growing while records
// arrive, and a job submitted in the SQL box starts.
const { chromium } = require("playwright-core");
const [url, shot] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
    page.on("pageerror", (e) => { console.error("page error:", e.message); process.exitCode = 1; });
    await page.goto(url + "/");
    // The job, with its status.
    await page.waitForFunction(() => document.querySelector("#jobs").textContent.includes("per_second"), null, { timeout: 30000 });
    await page.waitForFunction(() => document.querySelector("#jobs").textContent.includes("running"), null, { timeout: 30000 });
    // The served table: rows and chart bars, growing while records arrive.
    const count = () => page.evaluate(() => ({
      rows: document.querySelectorAll(".table-view .rows tr").length - 1,
      bars: document.querySelectorAll(".table-view svg rect.bar").length,
    }));
    await page.waitForFunction(() => document.querySelectorAll(".table-view svg rect.bar").length >= 3, null, { timeout: 30000 });
    const first = await count();
    await page.waitForFunction((n) => document.querySelectorAll(".table-view .rows tr").length - 1 > n, first.rows, { timeout: 30000 });
    const later = await count();
    if (!(later.rows > first.rows && later.bars >= first.bars)) throw new Error(`not live: ${JSON.stringify([first, later])}`);
    const header = await page.evaluate(() => document.querySelector(".table-view .rows tr").textContent);
    if (!header.includes("window_start") || !header.includes("readings")) throw new Error("header: " + header);
    // The SQL box starts a job.
    await page.fill("#sql", "CREATE TABLE hot (device STRING, temp DOUBLE) WITH ('connector' = 'http');\n" +
      "INSERT INTO hot SELECT device, temp FROM readings WHERE temp > 30;");
    await page.click("#submit");
    await page.waitForFunction(() => document.querySelector("#submitted").textContent.includes("started hot"), null, { timeout: 30000 });
    await page.waitForFunction(() => document.querySelector("#jobs").textContent.includes("hot"), null, { timeout: 30000 });
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`browser test: ${later.rows} rows, ${later.bars} bars; a job submitted from the page`);
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error("browser test failed:", e.message); process.exit(1); });
