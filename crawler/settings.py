"""Scrapy settings for armswatch: explicit limits a monitoring crawler needs.

Scrapy's defaults are generous (1 GiB downloads, 180 s timeouts, telnet console,
file:// and data: handlers); a crawler that runs unattended against hundreds of
untrusted sites sets each of these on purpose. Values a user may change come from the
TOML config (crawler.config.CrawlSettings) and override these in crawler.crawl.
"""

from crawler import config as _config  # lower case: not read as a Scrapy setting

BOT_NAME = "armswatch"
SPIDER_MODULES = ["spiders"]
NEWSPIDER_MODULE = "spiders"

# Politeness
ROBOTSTXT_OBEY = True
USER_AGENT = _config.DEFAULT_USER_AGENT
# robots.txt rules are matched against the crawler's own User-Agent (crawler.crawl sets it from
# [crawl].user_agent), not each request's header: a source's browser string must not slip past
# rules written for armswatch. Its product token, as RFC 9309 asks: "armswatch"
ROBOTSTXT_USER_AGENT = _config.robots_product_token(USER_AGENT)
# RFC 9309, 2.5: at least 500 KiB of a robots.txt are parsed; past this its rest is ignored, and
# max_page_bytes does not apply to it (crawler.robotstxt)
ARMSWATCH_ROBOTSTXT_MAXSIZE = 512 * 1024
# one sent compressed anyway (it is asked for uncompressed) is inflated up to this, then cut likewise
ARMSWATCH_ROBOTSTXT_INFLATED_MAXSIZE = 4 * 1024 * 1024
CONCURRENT_REQUESTS = 32
CONCURRENT_REQUESTS_PER_DOMAIN = 2
# Scrapy's global limit also counts the requests that wait for their host's robots.txt, so each
# dead host holds two of its places for a whole timeout: with 32, some 16 dead hosts among hundreds
# of sources stopped every download. The spider raises it to two per source host, up to this many;
# the article pages out at once stay bounded by the configured 32 (spiders.frontier), and with
# them the memory the pages take.
MAX_CONCURRENT_REQUESTS = 256
# items handled at once per response: an article page yields one, and Scrapy starts this many
# tasks for every response whatever it yields (100 by default)
CONCURRENT_ITEMS = 8
# pages downloaded and waiting for an extraction worker before Scrapy stops fetching more (5 MB by
# default): 2 MB is still some twenty pages ahead of two workers. Crawl benchmark, 4 A/B pairs:
# peak PSS -5 MB, pages/s the same within 1%
SCRAPER_SLOT_MAX_ACTIVE_SIZE = 2_000_000
DOWNLOAD_DELAY = 0.25
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.25
AUTOTHROTTLE_MAX_DELAY = 30  # also the most a robots.txt Crawl-delay can ask (crawler.extensions)
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
COOKIES_ENABLED = False

# Limits: nothing is held whole past these, and no request waits forever
DOWNLOAD_TIMEOUT = 30
DNS_TIMEOUT = 15
DOWNLOAD_MAXSIZE = 5_000_000
DOWNLOAD_WARNSIZE = 2_000_000
REDIRECT_MAX_TIMES = 5
RETRY_ENABLED = True
RETRY_TIMES = 1
RETRY_GIVE_UP_LOG_LEVEL = "INFO"  # not an error of its own: the source's or the article's warning names it
# Scrapy's list without its timeout: a host that did not answer within DOWNLOAD_TIMEOUT is not
# asked again in the run (its source's next run, and the article retries, ask again). A retry
# doubled the time each dead host held its download places.
RETRY_EXCEPTIONS = [
    "scrapy.exceptions.CannotResolveHostError",
    "scrapy.exceptions.DownloadConnectionRefusedError",
    "scrapy.exceptions.DownloadFailedError",
    "scrapy.exceptions.ResponseDataLossError",
    "twisted.internet.error.ConnectionDone",
    "twisted.internet.error.ConnectError",
    "twisted.internet.error.ConnectionLost",
    OSError,  # Scrapy's HttpCompression middleware raises it on an empty compressed body
    "scrapy.core.downloader.handlers.http11.TunnelError",
]
# not 429: a host that says "too many requests", or a 5xx with Retry-After, is not asked again
# within the run (crawler.middlewares.HostRestMiddleware): its pages are the next run's
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408]

# Only http(s): no local files, data: URIs, FTP or S3
DOWNLOAD_HANDLERS = {"file": None, "data": None, "ftp": None, "s3": None}
DOWNLOADER_MIDDLEWARES = {
    "crawler.middlewares.UrlPolicyMiddleware": 90,
    # Scrapy's own lets concurrent first requests to a host skip robots.txt (see crawler/robotstxt.py)
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "crawler.robotstxt.RobotsTxtMiddleware": 100,
    # before Scrapy's RedirectMiddleware (600) sees a 3xx: names loops and non-http targets
    "crawler.middlewares.RedirectGuardMiddleware": 650,
    # sees a 429 (or a 5xx with Retry-After) before Scrapy's RetryMiddleware (550) would retry it
    "crawler.middlewares.HostRestMiddleware": 560,
    # Scrapy's decodes each whole page to read its first 4 KB, and keeps the copy
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "crawler.middlewares.HeadMetaRefreshMiddleware": 580,
    # it filters by a spider's allowed_domains, which armswatch never sets (sources name their
    # own addresses): it let every request through at 2% of the crawl process's time
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
}
# Scrapy's depth tracking only counts link depth for DEPTH_LIMIT and stats; listing pages
# count their own pagination depth (max_pages, spiders/sources.py): it is work per page for nothing
SPIDER_MIDDLEWARES = {"scrapy.spidermiddlewares.depth.DepthMiddleware": None}
ARMSWATCH_ALLOW_PRIVATE_ADDRESSES = True

TELNETCONSOLE_ENABLED = False
EXTENSIONS = {
    "crawler.extensions.FreeMemoryReturner": 500,
    # a robots.txt Crawl-delay is each host's floor, which AutoThrottle never goes below
    "crawler.extensions.RobotsCrawlDelay": 500,
    "scrapy.extensions.throttle.AutoThrottle": None,
    "crawler.extensions.FlooredAutoThrottle": 0,
}
LOG_LEVEL = "INFO"

ITEM_PIPELINES = {
    "crawler.pipelines.ExtractionPipeline": 100,
    "crawler.pipelines.StoragePipeline": 800,
}

# armswatch's own settings (filled from the config by crawler.crawl)
ARMSWATCH_EXTRACTION_WORKERS = 0  # 0: one per core
ARMSWATCH_RULES = ["arms-procurement"]
