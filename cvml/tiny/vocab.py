"""Vocabularies for the synthetic CV generator: roles, phrasings, metrics, fake identities.

Plain data, so a reviewer can check realism at a glance. Conventions:
- A skill is "JD wording|CV wording" (or one wording for both): job ads and CVs often
  name the same thing differently, and tailoring means switching to the ad's wording.
- A task is (strong verbs, object, metric kind, skills that fit it, by JD wording).
  "{n}" in an object is where a count goes. Objects never name a skill, so a keyword
  can only reach a CV through a bullet's tool.
"""

from __future__ import annotations

REDUCE = ("Cut", "Reduced", "Lowered", "Trimmed")
GROW = ("Increased", "Grew", "Boosted", "Raised")
IMPROVE = ("Improved", "Raised", "Lifted")
BUILD = ("Built", "Designed", "Developed", "Created")
LEAD = ("Led", "Managed", "Directed", "Oversaw")
AUTOMATE = ("Automated", "Streamlined")
TRAIN = ("Trained", "Mentored", "Coached")
# How a tool attaches to a bullet: people are trained *in* a skill, everything else is done *using* it.
PREPOSITIONS = {TRAIN: ("in",)}
DEFAULT_PREPOSITIONS = ("using", "with")

ROLES: list[dict] = [
    {
        "title": "Software Engineer",
        "skills": ["Python", "Java", "PostgreSQL|Postgres", "Docker", "Kubernetes|k8s",
                   "Amazon Web Services|AWS", "CI/CD|build pipelines", "Redis", "React"],
        "tasks": [(REDUCE, "API response time", "down", ("Redis", "PostgreSQL", "Python", "Java")),
                  (REDUCE, "cloud hosting costs", "saving", ("Amazon Web Services", "Kubernetes", "Docker")),
                  (BUILD, "a billing microservice", None, ("Python", "Java", "PostgreSQL", "Docker")),
                  (AUTOMATE, "the release process", "hours", ("CI/CD", "Docker", "Kubernetes")),
                  (IMPROVE, "unit test coverage", "up", ("Python", "Java", "React", "CI/CD")),
                  (("Migrated",), "{n} legacy services to the new platform", "count", ("Kubernetes", "Docker", "Amazon Web Services"))],
        "duties": ["build and run backend services", "improve reliability and performance", "review code and mentor juniors"],
    },
    {
        "title": "Data Analyst",
        "skills": ["SQL", "Microsoft Excel|Excel", "Tableau", "Power BI|PowerBI", "Python",
                   "Google Analytics|GA", "Looker", "A/B testing|split testing", "dbt"],
        "tasks": [(REDUCE, "monthly reporting time", "down", ("Python", "SQL", "dbt", "Power BI")),
                  (BUILD, "a KPI dashboard for the sales team", None, ("Tableau", "Power BI", "Looker")),
                  (AUTOMATE, "weekly data quality checks", "hours", ("dbt", "SQL", "Python")),
                  (IMPROVE, "forecast accuracy", "up", ("Python", "Microsoft Excel", "SQL")),
                  (("Analysed", "Evaluated"), "{n} marketing campaigns", "count", ("Google Analytics", "A/B testing", "SQL")),
                  (REDUCE, "errors in finance reports", "down", ("Microsoft Excel", "SQL", "dbt"))],
        "duties": ["turn raw data into clear reports", "build dashboards for business teams", "support decisions with analysis"],
    },
    {
        "title": "Registered Nurse",
        "skills": ["patient assessment", "Epic EHR|Epic", "medication administration", "wound care",
                   "IV therapy|IV lines", "triage", "infection control", "BLS certification|BLS"],
        "tasks": [(("Triaged", "Assessed"), "{n} patients per shift in the emergency department", "count", ("Epic EHR", "patient assessment")),
                  (REDUCE, "medication errors on the ward", "down", ("Epic EHR", "medication administration")),
                  (REDUCE, "patient wait times", "down", ("triage", "Epic EHR")),
                  (TRAIN, "{n} newly qualified nurses", "count", ("wound care", "IV therapy", "infection control", "BLS certification")),
                  (IMPROVE, "patient satisfaction scores", "up", ("patient assessment", "Epic EHR")),
                  (("Coordinated", "Led"), "discharge planning for the surgical unit", None, ("Epic EHR", "patient assessment"))],
        "duties": ["deliver safe, high-quality patient care", "work closely with doctors and families", "keep accurate patient records"],
    },
    {
        "title": "Sales Manager",
        "skills": ["Salesforce", "B2B sales", "CRM management|CRM", "pipeline forecasting|forecasting",
                   "contract negotiation|negotiation", "HubSpot", "key account management|account management", "Sales Navigator"],
        "tasks": [(GROW, "revenue from existing accounts", "revenue", ("key account management", "Salesforce")),
                  (("Closed", "Secured", "Won"), "{n} enterprise deals", "count", ("Salesforce", "HubSpot", "contract negotiation")),
                  (LEAD, "a team of {n} account executives", "count", ("Salesforce", "HubSpot", "pipeline forecasting")),
                  (IMPROVE, "the win rate", "up", ("Sales Navigator", "CRM management", "B2B sales")),
                  (REDUCE, "the sales cycle length", "down", ("HubSpot", "CRM management", "contract negotiation")),
                  (BUILD, "a new partner channel", None, ("B2B sales", "Sales Navigator"))],
        "duties": ["grow revenue in a defined territory", "coach a team of account executives", "own the quarterly forecast"],
    },
    {
        "title": "HR Specialist",
        "skills": ["Workday", "BambooHR", "employee relations", "onboarding programs|onboarding", "HR policy",
                   "payroll", "benefits administration|benefits", "employment law"],
        "tasks": [(("Onboarded",), "{n} new hires", "count", ("BambooHR", "Workday", "onboarding programs")),
                  (REDUCE, "time to hire", "down", ("Workday", "BambooHR")),
                  (REDUCE, "first-year staff turnover", "down", ("onboarding programs", "employee relations")),
                  (BUILD, "a new performance review process", None, ("Workday", "BambooHR")),
                  (AUTOMATE, "leave requests", "hours", ("Workday", "BambooHR", "payroll")),
                  (TRAIN, "{n} line managers", "count", ("employment law", "HR policy", "employee relations"))],
        "duties": ["support managers on people matters", "run onboarding and HR processes", "keep HR records accurate"],
    },
    {
        "title": "Accountant",
        "skills": ["QuickBooks", "Xero", "Microsoft Excel|Excel", "accounts payable|AP", "month-end close|month end",
                   "reconciliations", "IFRS", "SAP"],
        "tasks": [(REDUCE, "the monthly closing cycle", "down", ("Xero", "QuickBooks", "SAP")),
                  (("Reconciled",), "{n} bank and supplier accounts each month", "count", ("Xero", "QuickBooks", "Microsoft Excel")),
                  (REDUCE, "late payment penalties", "saving", ("accounts payable", "SAP")),
                  (AUTOMATE, "invoice processing", "hours", ("Xero", "SAP", "QuickBooks")),
                  (("Prepared",), "audit files for the external auditors", None, ("IFRS", "Microsoft Excel")),
                  (REDUCE, "posting errors in the ledger", "down", ("reconciliations", "Microsoft Excel", "SAP"))],
        "duties": ["manage the ledger and monthly close", "prepare statutory accounts", "work with auditors and tax advisers"],
    },
    {
        "title": "Teacher",
        "skills": ["lesson planning", "classroom management", "Google Classroom", "differentiated instruction|differentiation",
                   "SEN support", "formative assessment|assessment", "curriculum design", "parent communication"],
        "tasks": [(("Taught",), "{n} students in mixed-ability classes", "count", ("Google Classroom", "differentiated instruction")),
                  (IMPROVE, "exam pass rates", "up", ("formative assessment", "differentiated instruction")),
                  (BUILD, "a new science unit for the lower school", None, ("Google Classroom", "curriculum design")),
                  (REDUCE, "unauthorised absences", "down", ("parent communication", "Google Classroom")),
                  (LEAD, "the after-school coding club", None, ("Google Classroom",)),
                  (TRAIN, "{n} trainee teachers", "count", ("classroom management", "lesson planning", "SEN support"))],
        "duties": ["plan and deliver engaging lessons", "track and report pupil progress", "work with parents and colleagues"],
    },
    {
        "title": "Marketing Manager",
        "skills": ["SEO", "Google Ads|AdWords", "HubSpot", "email marketing|email campaigns", "content strategy",
                   "Google Analytics|GA", "Marketo", "brand management|branding"],
        "tasks": [(GROW, "organic website traffic", "up", ("SEO", "content strategy")),
                  (REDUCE, "cost per lead", "down", ("Google Ads", "HubSpot", "Marketo")),
                  (LEAD, "a product launch campaign", None, ("HubSpot", "email marketing", "Google Ads")),
                  (GROW, "the newsletter list", "up", ("email marketing", "HubSpot", "Marketo")),
                  (GROW, "pipeline from paid campaigns", "revenue", ("Google Ads", "Google Analytics")),
                  (LEAD, "a team of {n} marketers", "count", ("HubSpot", "Google Analytics"))],
        "duties": ["plan and run multi-channel campaigns", "own the marketing budget", "report on pipeline and ROI"],
    },
    {
        "title": "Project Manager",
        "skills": ["Jira", "Agile|agile methods", "Scrum", "risk management", "MS Project|Microsoft Project",
                   "stakeholder management|stakeholder updates", "budgeting", "PMP"],
        "tasks": [(("Delivered",), "{n} client projects on time and on budget", "count", ("Agile", "MS Project", "Jira")),
                  (REDUCE, "project overruns", "down", ("risk management", "MS Project")),
                  (LEAD, "a cross-functional team of {n}", "count", ("Scrum", "Agile", "Jira")),
                  (REDUCE, "vendor costs", "saving", ("budgeting", "stakeholder management")),
                  (BUILD, "a shared project reporting template", None, ("Jira", "MS Project")),
                  (IMPROVE, "on-time delivery", "up", ("Scrum", "risk management", "Agile"))],
        "duties": ["plan and deliver projects end to end", "manage scope, risk and budget", "keep stakeholders informed"],
    },
    {
        "title": "Customer Support Specialist",
        "skills": ["Zendesk", "Freshdesk", "live chat", "ticket triage|triaging tickets", "CRM",
                   "knowledge base writing|help articles", "Service Cloud", "de-escalation"],
        "tasks": [(REDUCE, "the support ticket backlog", "down", ("Zendesk", "Freshdesk", "ticket triage")),
                  (("Resolved", "Handled"), "{n} customer tickets a day", "count", ("Zendesk", "Freshdesk", "Service Cloud", "live chat")),
                  (IMPROVE, "customer satisfaction scores", "up", ("live chat", "de-escalation")),
                  (REDUCE, "average first response time", "down", ("Zendesk", "Service Cloud", "ticket triage")),
                  (("Wrote", "Published"), "{n} self-service guides", "count", ("Zendesk", "Freshdesk")),
                  (TRAIN, "{n} new support agents", "count", ("de-escalation", "Zendesk", "knowledge base writing"))],
        "duties": ["answer customer questions by chat and email", "resolve issues on first contact", "improve our help centre"],
    },
    {
        "title": "Warehouse Supervisor",
        "skills": ["WMS|warehouse management system", "forklift operation|forklift", "inventory control", "SAP",
                   "Lean|lean methods", "health and safety", "shift scheduling|rotas", "RF scanners|scanners"],
        "tasks": [(REDUCE, "picking errors", "down", ("RF scanners", "WMS")),
                  (LEAD, "a shift team of {n} operatives", "count", ("shift scheduling", "WMS")),
                  (IMPROVE, "order dispatch speed", "up", ("Lean", "WMS", "SAP")),
                  (REDUCE, "lost-time accidents", "down", ("health and safety",)),
                  (REDUCE, "overtime costs", "saving", ("shift scheduling", "Lean")),
                  (TRAIN, "{n} new operatives", "count", ("forklift operation", "health and safety", "inventory control"))],
        "duties": ["run a busy warehouse shift", "keep stock accurate and orders moving", "lead a safe, motivated team"],
    },
    {
        "title": "Data Scientist",
        "skills": ["Python", "scikit-learn|sklearn", "PyTorch", "SQL", "Spark|PySpark", "A/B testing", "pandas", "MLflow"],
        "tasks": [(BUILD, "a churn prediction model", None, ("scikit-learn", "Python", "PyTorch")),
                  (REDUCE, "customer churn", "down", ("scikit-learn", "A/B testing")),
                  (IMPROVE, "recommendation click-through", "up", ("PyTorch", "A/B testing")),
                  (AUTOMATE, "model retraining", "hours", ("MLflow", "Spark", "Python")),
                  (REDUCE, "fraud losses", "saving", ("scikit-learn", "Spark", "PyTorch")),
                  (("Deployed", "Shipped"), "{n} models to production", "count", ("MLflow", "Python"))],
        "duties": ["build and ship predictive models", "design experiments and read results", "explain findings to product teams"],
    },
    {
        "title": "Graphic Designer",
        "skills": ["Adobe Photoshop|Photoshop", "Adobe Illustrator|Illustrator", "Figma", "InDesign", "brand identity",
                   "typography", "motion graphics", "Canva"],
        "tasks": [(("Designed", "Created"), "{n} campaign visuals per month", "count", ("Adobe Photoshop", "Canva", "Figma")),
                  (BUILD, "a new brand style guide", None, ("InDesign", "Adobe Illustrator")),
                  (REDUCE, "design turnaround time", "down", ("Figma", "Canva")),
                  (IMPROVE, "email click-through rates", "up", ("Figma", "Adobe Photoshop", "motion graphics")),
                  (("Redesigned",), "the company website", None, ("Figma",)),
                  (("Produced",), "{n} trade show banners", "count", ("Adobe Illustrator", "InDesign"))],
        "duties": ["design for print, web and social", "keep our brand consistent", "work with marketing on campaigns"],
    },
    {
        "title": "Mechanical Engineer",
        "skills": ["SolidWorks", "AutoCAD", "finite element analysis|FEA", "GD&T", "MATLAB",
                   "root cause analysis|RCA", "Six Sigma", "CNC machining|CNC"],
        "tasks": [(REDUCE, "part weight", "down", ("finite element analysis", "SolidWorks")),
                  (REDUCE, "production scrap", "saving", ("Six Sigma", "root cause analysis")),
                  (BUILD, "a test rig for gearbox validation", None, ("SolidWorks", "MATLAB")),
                  (IMPROVE, "line throughput", "up", ("Six Sigma", "CNC machining")),
                  (REDUCE, "warranty claims", "down", ("root cause analysis", "GD&T")),
                  (LEAD, "design reviews for {n} new components", "count", ("SolidWorks", "AutoCAD", "GD&T"))],
        "duties": ["design and test mechanical parts", "support production and suppliers", "solve quality problems"],
    },
    {
        "title": "Financial Analyst",
        "skills": ["financial modelling|financial modeling", "Microsoft Excel|Excel", "SAP", "Power BI",
                   "variance analysis", "budgeting", "forecasting", "Bloomberg Terminal|Bloomberg"],
        "tasks": [(BUILD, "a three-statement model for the board", None, ("Microsoft Excel", "financial modelling")),
                  (IMPROVE, "cash flow projections", "up", ("forecasting", "Microsoft Excel")),
                  (REDUCE, "budget preparation time", "down", ("SAP", "Microsoft Excel", "Power BI")),
                  (("Identified", "Delivered"), "procurement cost savings", "saving", ("variance analysis", "SAP")),
                  (AUTOMATE, "monthly management reports", "hours", ("Power BI", "SAP")),
                  (("Analysed", "Evaluated"), "{n} investment proposals", "count", ("financial modelling", "Bloomberg Terminal"))],
        "duties": ["build models that guide investment decisions", "own monthly reporting", "partner with budget holders"],
    },
    {
        "title": "Operations Manager",
        "skills": ["Lean", "Six Sigma", "ERP systems|ERP", "KPI reporting|KPIs", "vendor management",
                   "budget management", "process improvement", "Microsoft Excel|Excel"],
        "tasks": [(REDUCE, "operating costs", "saving", ("Lean", "process improvement", "vendor management")),
                  (LEAD, "a team of {n} staff across two sites", "count", ("KPI reporting", "budget management")),
                  (IMPROVE, "on-time delivery", "up", ("Six Sigma", "ERP systems")),
                  (REDUCE, "order processing time", "down", ("ERP systems", "Lean")),
                  (("Renegotiated",), "{n} supplier contracts", "count", ("vendor management",)),
                  (BUILD, "a daily operations dashboard", None, ("Microsoft Excel", "KPI reporting"))],
        "duties": ["run day-to-day operations", "improve cost, quality and speed", "manage suppliers and budgets"],
    },
    {
        "title": "Recruiter",
        "skills": ["LinkedIn Recruiter", "Greenhouse", "Boolean search", "applicant tracking systems|ATS",
                   "candidate sourcing|sourcing", "employer branding", "interviewing", "Workday"],
        "tasks": [(("Hired", "Placed"), "{n} engineers", "count", ("LinkedIn Recruiter", "Boolean search", "Greenhouse")),
                  (REDUCE, "time to fill", "down", ("Greenhouse", "applicant tracking systems", "Workday")),
                  (REDUCE, "agency fees", "saving", ("candidate sourcing", "LinkedIn Recruiter")),
                  (IMPROVE, "offer acceptance rate", "up", ("employer branding", "Greenhouse")),
                  (BUILD, "a graduate hiring programme", None, ("employer branding", "Workday")),
                  (TRAIN, "{n} hiring managers", "count", ("interviewing", "Greenhouse"))],
        "duties": ["hire great people across the business", "partner with hiring managers", "give candidates a great experience"],
    },
    {
        "title": "Product Manager",
        "skills": ["product roadmaps|roadmaps", "Jira", "user research", "A/B testing|experiments", "SQL",
                   "Amplitude", "Figma", "OKRs"],
        "tasks": [(("Launched", "Shipped"), "a self-serve onboarding flow", None, ("Figma", "user research")),
                  (GROW, "weekly active users", "up", ("A/B testing", "Amplitude")),
                  (REDUCE, "churn on the basic plan", "down", ("user research", "Amplitude", "SQL")),
                  (GROW, "subscription revenue", "revenue", ("A/B testing", "product roadmaps")),
                  (("Prioritised", "Prioritized"), "{n} features for the mobile app", "count", ("Jira", "OKRs", "product roadmaps")),
                  (IMPROVE, "trial-to-paid conversion", "up", ("A/B testing", "Amplitude", "SQL"))],
        "duties": ["own the roadmap for one product area", "work with design and engineering", "measure what we ship"],
    },
    {
        "title": "DevOps Engineer",
        "skills": ["Terraform", "Kubernetes|k8s", "Amazon Web Services|AWS", "Docker", "Jenkins",
                   "Prometheus", "Ansible", "GitHub Actions"],
        "tasks": [(REDUCE, "deployment time", "down", ("GitHub Actions", "Jenkins", "Kubernetes")),
                  (REDUCE, "cloud spend", "saving", ("Terraform", "Amazon Web Services", "Kubernetes")),
                  (AUTOMATE, "server provisioning", "hours", ("Terraform", "Ansible")),
                  (REDUCE, "mean time to recovery", "down", ("Prometheus", "Kubernetes")),
                  (("Migrated",), "{n} services to containers", "count", ("Docker", "Kubernetes")),
                  (BUILD, "a self-service deployment platform", None, ("Kubernetes", "GitHub Actions", "Terraform"))],
        "duties": ["run our cloud infrastructure", "automate builds and deployments", "keep services fast and available"],
    },
    {
        "title": "Administrative Assistant",
        "skills": ["Microsoft Office|MS Office", "calendar management|diary management", "Google Workspace|G Suite",
                   "minute taking|minutes", "travel booking", "data entry", "SharePoint", "Zoom"],
        "tasks": [(("Managed", "Coordinated"), "diaries for {n} senior managers", "count", ("Microsoft Office", "Google Workspace")),
                  (REDUCE, "office supply costs", "saving", ("Microsoft Office", "data entry")),
                  (AUTOMATE, "meeting scheduling", "hours", ("Google Workspace", "Zoom", "Microsoft Office")),
                  (("Organised", "Organized"), "{n} company events", "count", ("Google Workspace", "Zoom")),
                  (BUILD, "a shared filing system", None, ("SharePoint", "Google Workspace")),
                  (REDUCE, "invoice processing delays", "down", ("data entry", "SharePoint"))],
        "duties": ["support a busy leadership team", "keep the office running smoothly", "organise meetings and travel"],
    },
    {
        "title": "Content Writer",
        "skills": ["SEO", "WordPress", "copywriting", "editing", "Google Analytics|GA", "content strategy", "Ahrefs", "CMS"],
        "tasks": [(("Wrote", "Published"), "{n} blog articles a month", "count", ("WordPress", "CMS")),
                  (GROW, "organic search traffic", "up", ("SEO", "Ahrefs")),
                  (GROW, "newsletter open rates", "up", ("copywriting", "Google Analytics")),
                  (BUILD, "a house style guide", None, ("editing", "content strategy")),
                  (REDUCE, "review turnaround", "down", ("WordPress", "CMS")),
                  (("Rewrote",), "{n} product pages", "count", ("SEO", "copywriting"))],
        "duties": ["write clear, search-friendly content", "plan the editorial calendar", "work with subject experts"],
    },
    {
        "title": "Retail Store Manager",
        "skills": ["visual merchandising", "stock control", "staff scheduling|rotas", "POS systems|tills",
                   "loss prevention", "customer service", "P&L management|P&L", "Shopify"],
        "tasks": [(GROW, "store sales", "up", ("visual merchandising", "customer service")),
                  (REDUCE, "stock shrinkage", "down", ("loss prevention", "stock control")),
                  (LEAD, "a team of {n} sales associates", "count", ("staff scheduling", "customer service")),
                  (IMPROVE, "mystery shopper scores", "up", ("customer service", "visual merchandising")),
                  (REDUCE, "wage costs", "saving", ("staff scheduling", "P&L management")),
                  (("Opened",), "a second store location", None, ("Shopify", "POS systems"))],
        "duties": ["lead the store team", "hit sales and margin targets", "deliver great customer experience"],
    },
    {
        "title": "Logistics Coordinator",
        "skills": ["SAP", "route planning", "freight forwarding", "customs documentation|customs paperwork",
                   "Microsoft Excel|Excel", "TMS|transport management system", "supplier liaison", "inventory management"],
        "tasks": [(REDUCE, "freight costs", "saving", ("route planning", "TMS", "freight forwarding")),
                  (("Coordinated", "Scheduled"), "{n} shipments a week", "count", ("TMS", "SAP")),
                  (REDUCE, "late deliveries", "down", ("route planning", "TMS")),
                  (IMPROVE, "on-time delivery", "up", ("supplier liaison", "TMS")),
                  (BUILD, "a carrier scorecard", None, ("Microsoft Excel", "SAP")),
                  (REDUCE, "border delays", "down", ("customs documentation", "freight forwarding"))],
        "duties": ["plan inbound and outbound shipments", "work with carriers and suppliers", "keep delivery costs down"],
    },
    {
        "title": "QA Engineer",
        "skills": ["Selenium", "Cypress", "Postman", "Jira", "test automation|automated tests",
                   "regression testing|regression tests", "Python", "Java"],
        "tasks": [(AUTOMATE, "the release checklist", "hours", ("test automation", "Python", "Cypress")),
                  (REDUCE, "production defects", "down", ("regression testing", "test automation")),
                  (BUILD, "an API test framework", None, ("Postman", "Python", "Java")),
                  (IMPROVE, "test coverage", "up", ("Selenium", "Cypress", "test automation")),
                  (("Wrote", "Created"), "{n} end-to-end tests", "count", ("Cypress", "Selenium")),
                  (REDUCE, "release sign-off time", "down", ("test automation", "Jira"))],
        "duties": ["own quality for a product team", "automate tests across web and API", "find bugs before customers do"],
    },
    {
        "title": "Social Media Manager",
        "skills": ["Instagram", "TikTok", "LinkedIn", "Hootsuite", "Canva", "community management",
                   "paid social", "Sprout Social"],
        "tasks": [(GROW, "the follower count", "up", ("Instagram", "TikTok", "community management")),
                  (GROW, "engagement rate", "up", ("TikTok", "Instagram", "Canva")),
                  (("Ran", "Managed"), "{n} influencer campaigns", "count", ("Instagram", "TikTok")),
                  (REDUCE, "cost per click", "down", ("paid social", "LinkedIn")),
                  (BUILD, "a monthly content calendar", None, ("Hootsuite", "Sprout Social")),
                  (GROW, "traffic from social channels", "up", ("LinkedIn", "paid social"))],
        "duties": ["run our social channels day to day", "grow an engaged community", "report on reach and conversions"],
    },
    {
        "title": "Electrician",
        "skills": ["electrical installation", "fault finding", "PAT testing", "AutoCAD", "wiring regulations|wiring regs",
                   "health and safety", "solar PV", "EV charger installation|EV chargers"],
        "tasks": [(("Installed", "Fitted"), "{n} commercial lighting systems", "count", ("AutoCAD", "wiring regulations")),
                  (REDUCE, "callback rates", "down", ("fault finding", "PAT testing")),
                  (REDUCE, "energy costs for clients", "saving", ("solar PV", "EV charger installation")),
                  (TRAIN, "{n} apprentices", "count", ("fault finding", "health and safety", "wiring regulations")),
                  (("Completed",), "the rewiring of a listed building", None, ("AutoCAD", "wiring regulations")),
                  (IMPROVE, "first-time fix rates", "up", ("fault finding",))],
        "duties": ["install and maintain electrical systems", "find and fix faults safely", "certify work to current standards"],
    },
]

WEAK_OPENERS = ["Responsible for", "Helped with", "Worked on", "Was in charge of", "Did some work on",
                "Involved in", "Tasked with", "Assisted with", "Took care of"]
# At least four words each: a weak bullet must stay a full line even without a metric or tool.
FILLERS = ["as part of the wider team", "alongside my other daily duties", "whenever the team needed it",
           "as one of my regular tasks", "together with a few colleagues"]

# Metric kind -> (strong template, loose phrasings). {core} is "<Verb> <object>", {tool} a
# " using X" clause, {n} the formatted number; a loose phrasing must keep {n} verbatim.
# A count has no entry: its number sits inside the object, so both versions state it alike.
METRICS: dict[str, tuple[str, list[str]]] = {
    "down": ("{core} by {n}%{tool}", ["it went down about {n}%", "roughly {n}% lower after", "dropped around {n} percent"]),
    "up": ("{core} by {n}%{tool}", ["it went up about {n}%", "roughly {n}% higher after", "around {n} percent better"]),
    "saving": ("{core}{tool}, saving {n} a year", ["saved maybe {n} a year", "about {n} a year saved", "we saved around {n} yearly"]),
    "revenue": ("{core} by {n}{tool}", ["about {n} more revenue", "brought in around {n} extra", "roughly {n} in new sales"]),
    "hours": ("{core}{tool}, saving {n} hours a week", ["saved like {n} hours every week", "about {n} hours a week saved",
                                                        "freed up {n} hours weekly"]),
}
# Inclusive ranges and the step numbers are rounded to.
METRIC_RANGES: dict[str, tuple[int, int, int]] = {
    "down": (10, 60, 1), "up": (8, 75, 1), "saving": (4000, 150000, 500), "revenue": (50000, 900000, 5000),
    "hours": (2, 20, 1), "count": (3, 40, 1),
}

SUMMARY_OPENERS = ["", "Results-driven ", "Detail-oriented ", "Experienced ", "Motivated ", "Hands-on "]
BENEFITS = ["hybrid working", "25 days of annual leave", "a yearly learning budget", "private health cover",
            "a matched pension", "flexible hours", "an annual bonus"]
LANGUAGES = ["English", "French", "Spanish", "German", "Polish", "Hindi", "Arabic", "Mandarin"]
TRIVIAL_TARGETS = ["Done.", "N/A", "Improved it.", "See CV.", "Good."]
# Planted into targets: a fact no input states ({n}: a number absent from the inputs), and
# a protected attribute that invites discrimination in hiring.
FABRICATED_ADDITIONS = ["saving {n} hours a week", "cutting costs by {n}%", "across {n} countries",
                        "while at Globex Corporation", "after an MBA from Harvard University"]
HARMFUL_ADDITIONS = ["aged {n}", "a married mother of two", "{n} years old and in good health",
                     "a practising Catholic", "single, no children"]

FIRST_NAMES = ["Jane", "Omar", "Priya", "Lukas", "Chloe", "Mateo", "Aisha", "Tom", "Yuki", "Sofia", "Daniel",
               "Fatima", "Liam", "Ingrid", "Kwame", "Elena", "Ravi", "Grace", "Marek", "Nadia", "Ben", "Amara",
               "Hugo", "Mei", "Sean", "Zainab", "Pablo", "Hannah", "Arjun", "Olivia"]
LAST_NAMES = ["Doe", "Haddad", "Sharma", "Becker", "Martin", "Garcia", "Okafor", "Walsh", "Tanaka", "Rossi",
              "Cohen", "Rahman", "Murphy", "Larsen", "Mensah", "Petrova", "Iyer", "Thompson", "Novak", "Khan",
              "Wright", "Adeyemi", "Dubois", "Chen", "O'Brien", "Ali", "Fernandez", "Schmidt", "Patel", "Evans"]
COMPANIES = ["Northwind Labs", "Brightpath Health", "Copperleaf Retail", "Bluestone Logistics", "Acorn Analytics",
             "Harbourview Bank", "Meridian Foods", "Quayside Studios", "Redwood Systems", "Silverline Telecom",
             "Tidewater Energy", "Oakridge Academy", "Pinecrest Hospital", "Lumen Software", "Granite Insurance",
             "Westfield Manufacturing", "Skylark Travel", "Nimbus Cloud", "Evergreen Housing", "Falcon Freight"]
SCHOOLS = ["University of Leeds", "University of Toronto", "Trinity College Dublin", "University of Manchester",
           "Arizona State University", "University of Glasgow", "TU Munich", "University of Cape Town",
           "Monash University", "University of Bristol", "Ohio State University", "King's College London"]
DEGREES = ["BSc Computer Science", "BA Business Studies", "BSc Nursing", "BA English", "BSc Economics",
           "MSc Data Science", "BEng Mechanical Engineering", "BA Marketing", "PGCE Secondary Education",
           "BSc Accounting and Finance", "BA Graphic Design", "HND Logistics"]
# (city, postcode) pairs, so a planted street address looks like a real one.
CITY_POSTCODES = [("Leeds", "LS1 4AP"), ("Manchester", "M1 2AB"), ("Dublin", "D02 X285"), ("Toronto", "ON M5V 2T6"),
                  ("Austin", "TX 78701"), ("Berlin", "10115"), ("Glasgow", "G1 1XQ"), ("Bristol", "BS1 5TR"),
                  ("Melbourne", "VIC 3000"), ("Cape Town", "8001"), ("Denver", "CO 80202"), ("Lyon", "69002")]
CITIES = [city for city, _ in CITY_POSTCODES]
STREETS = ["Elm Street", "Baker Road", "Mill Lane", "Station Road", "Church Street", "Park Avenue",
           "Queen Street", "Maple Drive", "High Street", "Victoria Road"]
EMAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "proton.me", "icloud.com", "hotmail.de"]
# Country code and national number shapes ("#" is a digit) for international phone numbers.
PHONE_FORMATS = ["+44 7### ######", "+1 (###) ###-####", "+49 15# ########", "+33 6 ## ## ## ##",
                 "+91 ##### #####", "+61 4## ### ###"]
