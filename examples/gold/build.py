# ruff: noqa: E501 - the documents are prose, one paragraph a line
"""Build examples/gold/gold.jsonl from the hand-written labels below (rules: README.md here).

Each document is its text and its labels. A label is ``(TYPE, surface)``: every occurrence of
``surface`` in the text (whole words, case-sensitive) that is not inside a longer label; or
``(TYPE, surface, n)``: only the n-th occurrence (1-based, counted over the whole text). Longer
surfaces are placed first, so ``("PARTY", "Harlow")`` skips the "Harlow" inside "Harlow Timber
Company" when that is labelled too. Type ``"O"`` marks an occurrence that is deliberately not an
entity.

Checks (the script stops on the first failure): every label is found; spans never overlap;
``text[start:end] == surface``; every occurrence of every labelled surface is either labelled,
inside another label, or marked ``"O"``; types are the default ones; 150-400 words a document.

    python examples/gold/build.py                # writes examples/gold/gold.jsonl, prints counts
    python examples/gold/build.py --out -        # to stdout
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

TYPES = (
    "PERSON",
    "ORGANIZATION",
    "COURT",
    "JUDGE",
    "PARTY",
    "CASE_CITATION",
    "STATUTE",
    "DATE",
    "MONEY",
    "LOCATION",
)

Label = tuple[str, str] | tuple[str, str, int]

DOCS: list[tuple[str, str, str, list[Label]]] = []  # (id, kind, text, labels)


def doc(doc_id: str, kind: str, text: str, labels: list[Label]) -> None:
    DOCS.append((doc_id, kind, text.strip() + "\n", labels))


# Court opinions ---------------------------------------------------------------------------------

doc(
    "opinion-appeal-freight",
    "court opinion",
    """
UNITED STATES COURT OF APPEALS FOR THE TWELFTH CIRCUIT

HARLOW TIMBER COMPANY, Plaintiff-Appellee,
v.
BRISTANE RAIL SERVICES, INC., Defendant-Appellant.

No. 23-4417

Appeal from the United States District Court for the District of Western Columbia, Miriam T. Osei, District Judge, Presiding.

Argued and Submitted January 9, 2024, Portland, Oregon. Filed May 21, 2024.

Before: LINDQVIST, OKAFOR, and BRENNAN, Circuit Judges.

OKAFOR, Circuit Judge:

Bristane Rail Services, Inc. ("Bristane") appeals a jury verdict awarding Harlow Timber Company ("Harlow") $2,350,000 in damages for breach of a freight contract. Bristane argues that the Carmack Amendment, 49 U.S.C. § 14706, preempts Harlow's state-law claims. We have jurisdiction under 28 U.S.C. § 1291, and we affirm.

Harlow ships cedar lumber from its mill in Astoria, Oregon to buyers in Reno, Nevada. In March 2021, a Bristane train derailed near Klamath Falls, destroying forty carloads. Harlow's logistics manager, Dana Whitcombe, testified that Bristane's dispatcher, Paul Ferreira, ignored two weather warnings issued by the National Weather Service.

The district court held that the claims arose from a separate storage agreement, not from transportation. We agree. Under Aldana Farms v. Northway Freight Lines, 842 F.3d 1101, 1108 (12th Cir. 2016), the Carmack Amendment reaches only claims arising from the interstate transportation of goods. See also Pell v. Coastline Carriers, Inc., 611 F. Supp. 3d 214 (D. W. Col. 2020). Judge Osei correctly instructed the jury, and the award of $2,350,000 is supported by the record.

AFFIRMED.

BRENNAN, Circuit Judge, dissenting:

I would hold that the storage agreement was incidental to carriage and that the claims are preempted.
""",
    [
        ("COURT", "UNITED STATES COURT OF APPEALS FOR THE TWELFTH CIRCUIT"),
        ("COURT", "United States District Court for the District of Western Columbia"),
        ("PARTY", "HARLOW TIMBER COMPANY"),
        ("PARTY", "BRISTANE RAIL SERVICES, INC."),
        ("PARTY", "Bristane Rail Services, Inc."),
        ("PARTY", "Harlow Timber Company"),
        ("PARTY", "Bristane"),
        ("PARTY", "Harlow"),
        ("JUDGE", "Miriam T. Osei"),
        ("JUDGE", "Osei"),
        ("JUDGE", "LINDQVIST"),
        ("JUDGE", "OKAFOR"),
        ("JUDGE", "BRENNAN"),
        ("DATE", "January 9, 2024"),
        ("DATE", "May 21, 2024"),
        ("DATE", "March 2021"),
        ("LOCATION", "Portland, Oregon"),
        ("LOCATION", "Astoria, Oregon"),
        ("LOCATION", "Reno, Nevada"),
        ("LOCATION", "Klamath Falls"),
        ("MONEY", "$2,350,000"),
        ("STATUTE", "Carmack Amendment"),
        ("STATUTE", "49 U.S.C. § 14706"),
        ("STATUTE", "28 U.S.C. § 1291"),
        ("PERSON", "Dana Whitcombe"),
        ("PERSON", "Paul Ferreira"),
        ("ORGANIZATION", "National Weather Service"),
        ("CASE_CITATION", "Aldana Farms v. Northway Freight Lines, 842 F.3d 1101, 1108 (12th Cir. 2016)"),
        ("CASE_CITATION", "Pell v. Coastline Carriers, Inc., 611 F. Supp. 3d 214 (D. W. Col. 2020)"),
    ],
)

doc(
    "opinion-district-retaliation",
    "court opinion",
    """
IN THE UNITED STATES DISTRICT COURT FOR THE DISTRICT OF NORTH CALDER

RENATA VOSS, Plaintiff,
v.
QUILLFIELD ANALYTICS LLC and GORDON PIKE, Defendants.

Case No. 4:24-cv-00918-JMS

MEMORANDUM OPINION AND ORDER

Plaintiff Renata Voss worked as a senior data engineer at Quillfield Analytics LLC ("Quillfield") in Marlow Springs, North Calder, from August 2019 until her termination on February 14, 2023. She alleges that her supervisor, Gordon Pike, retaliated against her after she reported unpaid overtime to the Department of Labor. She brings claims under the Fair Labor Standards Act, 29 U.S.C. § 215(a)(3), and the North Calder Whistleblower Protection Act, N.C. Rev. Stat. § 41-207. Defendants move to dismiss under Federal Rule of Civil Procedure 12(b)(6).

To survive a motion to dismiss, a complaint must contain enough facts to state a claim that is plausible on its face. Brandt v. Oakhurst Mills, Inc., 588 U.S. 412, 420 (2019). Voss alleges that Pike told a colleague, Hector Ruiz, that she "would not last the quarter" two days after her complaint, and that Quillfield denied her a $14,000 retention bonus paid to every other engineer on her team. Those facts, taken as true, make the causal link plausible. See Delacroix v. Summit Bank of Calder, 97 F.4th 330, 336 (13th Cir. 2024).

Pike argues that individual supervisors cannot be liable under the state statute. The North Calder Supreme Court has not decided the question, but the statute reaches "any person acting on behalf of an employer." N.C. Rev. Stat. § 41-201(4). The Court predicts that the North Calder Supreme Court would read those words as written.

The motion to dismiss is DENIED. Defendants shall answer the complaint within fourteen days.

IT IS SO ORDERED.

Dated: October 3, 2024

Jonah M. Sterling
United States District Judge
""",
    [
        ("COURT", "UNITED STATES DISTRICT COURT FOR THE DISTRICT OF NORTH CALDER"),
        ("COURT", "North Calder Supreme Court"),
        ("PARTY", "RENATA VOSS"),
        ("PARTY", "QUILLFIELD ANALYTICS LLC"),
        ("PARTY", "GORDON PIKE"),
        ("PARTY", "Renata Voss"),
        ("PARTY", "Quillfield Analytics LLC"),
        ("PARTY", "Quillfield"),
        ("PARTY", "Gordon Pike"),
        ("PARTY", "Voss"),
        ("PARTY", "Pike"),
        ("LOCATION", "Marlow Springs, North Calder"),
        ("DATE", "August 2019"),
        ("DATE", "February 14, 2023"),
        ("DATE", "October 3, 2024"),
        ("ORGANIZATION", "Department of Labor"),
        ("STATUTE", "Fair Labor Standards Act"),
        ("STATUTE", "29 U.S.C. § 215(a)(3)"),
        ("STATUTE", "North Calder Whistleblower Protection Act"),
        ("STATUTE", "N.C. Rev. Stat. § 41-207"),
        ("STATUTE", "Federal Rule of Civil Procedure 12(b)(6)"),
        ("STATUTE", "N.C. Rev. Stat. § 41-201(4)"),
        ("CASE_CITATION", "Brandt v. Oakhurst Mills, Inc., 588 U.S. 412, 420 (2019)"),
        ("CASE_CITATION", "Delacroix v. Summit Bank of Calder, 97 F.4th 330, 336 (13th Cir. 2024)"),
        ("PERSON", "Hector Ruiz"),
        ("MONEY", "$14,000"),
        ("JUDGE", "Jonah M. Sterling"),
    ],
)

doc(
    "opinion-state-insurance",
    "court opinion",
    """
SUPREME COURT OF THE STATE OF NEW HALDEN

ESTATE OF LUCIEN ARCENEAUX, by its executor Margot Arceneaux, Petitioner,
v.
BELLWEATHER MUTUAL INSURANCE COMPANY, Respondent.

No. S-2022-0173

Decided November 30, 2023

Justice PRIYA RAMANATHAN delivered the opinion of the Court, in which Chief Justice DOUGLAS FENN and Justices ALVAREZ and NAKAGAWA joined.

Lucien Arceneaux died in a boating accident on Lake Temperance on July 4, 2020. Bellweather Mutual Insurance Company ("Bellweather") refused to pay the $500,000 death benefit under his life policy, citing a hazardous-activities exclusion. The Probate Court of Ashgrove County ruled for the estate, and the Court of Appeals reversed. We granted review.

Insurance exclusions are construed narrowly and against the insurer. Coyle v. Granite State Assurance Co., 311 N.Hd.2d 45, 52 (N. Hald. 2011). The exclusion here covers "motorized racing" and "skydiving." A weekend sail on a rented sloop is neither. Bellweather's own claims adjuster, Simone Okoro, conceded at her deposition that the company had paid similar claims in 2018 and 2019.

Bellweather also invokes New Halden Insurance Code § 627.409, which permits rescission for a material misstatement in an application. But Bellweather never identified any misstatement, and its underwriter, Ravi Deshpande, testified that Mr. Arceneaux answered every question on the application truthfully.

We reverse the judgment of the Court of Appeals and reinstate the judgment of the Probate Court of Ashgrove County, including prejudgment interest of $61,250.

FENN, C.J., concurring:

I join the opinion of the Court and write only to note that the exclusion was drafted after the policy was issued.
""",
    [
        ("COURT", "SUPREME COURT OF THE STATE OF NEW HALDEN"),
        ("COURT", "Probate Court of Ashgrove County"),
        ("COURT", "Court of Appeals"),
        ("PARTY", "ESTATE OF LUCIEN ARCENEAUX"),
        ("PARTY", "BELLWEATHER MUTUAL INSURANCE COMPANY"),
        ("PARTY", "Bellweather Mutual Insurance Company"),
        ("PARTY", "Bellweather"),
        ("PERSON", "Margot Arceneaux"),
        ("PERSON", "Lucien Arceneaux"),
        ("PERSON", "Arceneaux"),
        ("PERSON", "Simone Okoro"),
        ("PERSON", "Ravi Deshpande"),
        ("JUDGE", "PRIYA RAMANATHAN"),
        ("JUDGE", "DOUGLAS FENN"),
        ("JUDGE", "ALVAREZ"),
        ("JUDGE", "NAKAGAWA"),
        ("JUDGE", "FENN"),
        ("DATE", "November 30, 2023"),
        ("DATE", "July 4, 2020"),
        ("DATE", "2018"),
        ("DATE", "2019"),
        ("LOCATION", "Lake Temperance"),
        ("MONEY", "$500,000"),
        ("MONEY", "$61,250"),
        ("CASE_CITATION", "Coyle v. Granite State Assurance Co., 311 N.Hd.2d 45, 52 (N. Hald. 2011)"),
        ("STATUTE", "New Halden Insurance Code § 627.409"),
    ],
)

# Contracts ---------------------------------------------------------------------------------------

doc(
    "contract-lease",
    "contract",
    """
COMMERCIAL LEASE AGREEMENT

This Commercial Lease Agreement (the "Lease") is made on September 15, 2024 between Pemberton Harbor Properties LLC, a Maine limited liability company ("Landlord"), and Quayside Coffee Roasters, Inc., a Vermont corporation ("Tenant").

1. Premises. Landlord leases to Tenant the ground-floor unit at 88 Wharf Street, Unit 2, Portland, Maine 04101 (the "Premises"), consisting of approximately 2,400 square feet.

2. Term. The term begins on November 1, 2024 and ends on October 31, 2029, unless terminated earlier under Section 14.

3. Rent. Tenant shall pay base rent of $7,200 per month, payable in advance on the first day of each month. Base rent increases by three percent on each anniversary of the commencement date.

4. Security Deposit. On signing, Tenant shall deposit $21,600 with Landlord, to be held in a separate account at Casco Ledger Bank.

5. Use. Tenant shall use the Premises only for a coffee roastery and café and shall comply with the City of Portland Land Use Code, Chapter 14, and with Me. Rev. Stat. tit. 38, § 585.

6. Insurance. Tenant shall maintain commercial general liability insurance of at least $2,000,000 per occurrence with an insurer rated A- or better by Fairmount Rating Agency.

7. Governing Law. This Lease is governed by the laws of the State of Maine. Any dispute shall be brought in the Cumberland County Superior Court.

IN WITNESS WHEREOF, the parties have signed this Lease as of the date first written above.

PEMBERTON HARBOR PROPERTIES LLC
By: Eleanor Quist, Managing Member

QUAYSIDE COFFEE ROASTERS, INC.
By: Tobias Wren, President
""",
    [
        ("DATE", "September 15, 2024"),
        ("DATE", "November 1, 2024"),
        ("DATE", "October 31, 2029"),
        ("PARTY", "Pemberton Harbor Properties LLC"),
        ("PARTY", "Quayside Coffee Roasters, Inc."),
        ("PARTY", "PEMBERTON HARBOR PROPERTIES LLC"),
        ("PARTY", "QUAYSIDE COFFEE ROASTERS, INC."),
        ("LOCATION", "88 Wharf Street, Unit 2, Portland, Maine 04101"),
        ("LOCATION", "State of Maine"),
        ("LOCATION", "Maine"),
        ("LOCATION", "Vermont"),
        ("MONEY", "$7,200"),
        ("MONEY", "$21,600"),
        ("MONEY", "$2,000,000"),
        ("ORGANIZATION", "Casco Ledger Bank"),
        ("ORGANIZATION", "Fairmount Rating Agency"),
        ("STATUTE", "City of Portland Land Use Code, Chapter 14"),
        ("STATUTE", "Me. Rev. Stat. tit. 38, § 585"),
        ("COURT", "Cumberland County Superior Court"),
        ("PERSON", "Eleanor Quist"),
        ("PERSON", "Tobias Wren"),
    ],
)

doc(
    "contract-software-license",
    "contract",
    """
SOFTWARE LICENSE AND SERVICES AGREEMENT

This Software License and Services Agreement is entered into on 3 February 2025 by Lumière Data Systèmes SAS, a company registered in Lyon, France, with offices at 12 rue des Tanneurs, 69002 Lyon ("Licensor"), and Nordkap Freight AS, a company registered in Bergen, Norway ("Licensee").

1. License. Licensor grants Licensee a non-exclusive, non-transferable license to use the RouteWise software for up to 250 named users at its terminals.

2. Fees. Licensee shall pay an annual license fee of €184,000, invoiced on 1 March of each year, and implementation fees of €36,500 payable on acceptance. Late payments bear interest at the rate set by the European Central Bank plus eight percentage points.

3. Data Protection. Each party shall comply with Regulation (EU) 2016/679 and with the Norwegian Personal Data Act. Licensor's data protection officer, Anaïs Perrin-Dufour, is the contact for all requests from data subjects.

4. Term. The Agreement starts on 1 March 2025 and continues for three years unless terminated for material breach.

5. Liability. Neither party's aggregate liability under this Agreement shall exceed €500,000, except for breaches of Section 3.

6. Disputes. Any dispute shall be finally resolved under the Rules of Arbitration of the International Chamber of Commerce by one arbitrator seated in Geneva, Switzerland. The language of the arbitration shall be English.

Signed for Lumière Data Systèmes SAS by Étienne Marchetti, Directeur Général, and for Nordkap Freight AS by Sigrid Hålandsvik, Chief Executive Officer.
""",
    [
        ("DATE", "3 February 2025"),
        ("DATE", "1 March 2025"),
        ("DATE", "1 March"),
        ("PARTY", "Lumière Data Systèmes SAS"),
        ("PARTY", "Nordkap Freight AS"),
        ("LOCATION", "Lyon, France"),
        ("LOCATION", "12 rue des Tanneurs, 69002 Lyon"),
        ("LOCATION", "Bergen, Norway"),
        ("LOCATION", "Geneva, Switzerland"),
        ("MONEY", "€184,000"),
        ("MONEY", "€36,500"),
        ("MONEY", "€500,000"),
        ("ORGANIZATION", "European Central Bank"),
        ("ORGANIZATION", "International Chamber of Commerce"),
        ("STATUTE", "Regulation (EU) 2016/679"),
        ("STATUTE", "Norwegian Personal Data Act"),
        ("PERSON", "Anaïs Perrin-Dufour"),
        ("PERSON", "Étienne Marchetti"),
        ("PERSON", "Sigrid Hålandsvik"),
    ],
)

doc(
    "contract-settlement",
    "contract",
    """
SETTLEMENT AGREEMENT AND MUTUAL RELEASE

This Settlement Agreement is made as of June 30, 2023 by and between Corwin Medical Supply, Inc. ("Corwin") and Talbot & Reyes Dental Group, P.C. ("Talbot & Reyes"), to resolve the action captioned Corwin Medical Supply, Inc. v. Talbot & Reyes Dental Group, P.C., No. 2:22-cv-01150 (D. Ariz.), pending in the United States District Court for the District of Arizona.

RECITALS

A. Corwin alleges that Talbot & Reyes failed to pay invoices totaling $318,442.17 for imaging equipment delivered to its clinics in Tempe and Flagstaff between January 2021 and April 2022.

B. Talbot & Reyes denies liability and contends that the equipment did not conform to the purchase order signed by its office manager, Lorraine Bixby.

TERMS

1. Payment. Talbot & Reyes shall pay Corwin $240,000 in three installments: $80,000 on or before July 15, 2023; $80,000 on or before October 15, 2023; and $80,000 on or before January 15, 2024. Payments shall be wired to the trust account of Holloway Kemp LLP, counsel for Corwin.

2. Dismissal. Within five business days after the final installment, the parties shall file a stipulation of dismissal with prejudice under Federal Rule of Civil Procedure 41(a)(1)(A)(ii).

3. Release. Each party releases the other from all claims arising from the equipment, including claims under Ariz. Rev. Stat. § 47-2607.

4. Confidentiality. The terms of this Agreement are confidential, except as required by law or by the Arizona Board of Dental Examiners.

CORWIN MEDICAL SUPPLY, INC.
By: Martin Achebe, Chief Financial Officer

TALBOT & REYES DENTAL GROUP, P.C.
By: Dr. Yvonne Talbot, Managing Partner
""",
    [
        ("DATE", "June 30, 2023"),
        ("DATE", "January 2021"),
        ("DATE", "April 2022"),
        ("DATE", "July 15, 2023"),
        ("DATE", "October 15, 2023"),
        ("DATE", "January 15, 2024"),
        (
            "CASE_CITATION",
            "Corwin Medical Supply, Inc. v. Talbot & Reyes Dental Group, P.C., No. 2:22-cv-01150 (D. Ariz.)",
        ),
        ("PARTY", "Corwin Medical Supply, Inc."),
        ("PARTY", "Talbot & Reyes Dental Group, P.C."),
        ("PARTY", "CORWIN MEDICAL SUPPLY, INC."),
        ("PARTY", "TALBOT & REYES DENTAL GROUP, P.C."),
        ("PARTY", "Talbot & Reyes"),
        ("PARTY", "Corwin"),
        ("COURT", "United States District Court for the District of Arizona"),
        ("LOCATION", "Tempe"),
        ("LOCATION", "Flagstaff"),
        ("MONEY", "$318,442.17"),
        ("MONEY", "$240,000"),
        ("MONEY", "$80,000"),
        ("PERSON", "Lorraine Bixby"),
        ("PERSON", "Martin Achebe"),
        ("PERSON", "Yvonne Talbot"),
        ("ORGANIZATION", "Holloway Kemp LLP"),
        ("ORGANIZATION", "Arizona Board of Dental Examiners"),
        ("STATUTE", "Federal Rule of Civil Procedure 41(a)(1)(A)(ii)"),
        ("STATUTE", "Ariz. Rev. Stat. § 47-2607"),
    ],
)

doc(
    "contract-employment",
    "contract",
    """
EXECUTIVE EMPLOYMENT AGREEMENT

This Executive Employment Agreement is entered into on December 1, 2024 between Veridian Grid Storage Corp., a Texas corporation (the "Company"), and Nadia Farouk (the "Executive").

1. Position. The Company employs Nadia Farouk as Vice President of Engineering, reporting to the Chief Executive Officer, Leonard Castellanos. Her principal place of work is the Company's headquarters at 1900 Lamar Boulevard, Austin, Texas 78701.

2. Start Date. Employment begins on January 6, 2025.

3. Compensation. The Company shall pay the Executive an annual base salary of $285,000, a signing bonus of $40,000 payable with the first regular payroll, and a target annual bonus of 30 percent of base salary. The Executive shall receive an option to purchase 120,000 shares under the Company's equity incentive plan at an exercise price of $4.15 per share.

4. Restrictive Covenants. For twelve months after termination, the Executive shall not work for a competitor within Texas, Oklahoma or Louisiana. The parties intend this covenant to comply with Tex. Bus. & Com. Code § 15.50.

5. Prior Employer. The Executive represents that she has returned all confidential materials of her former employer, Solenne Battery Works, and is not bound by any non-competition obligation to it.

6. Governing Law; Venue. This Agreement is governed by Texas law. Any action shall be brought in the state district courts of Travis County, Texas, and each party waives trial by jury.

7. Notices. Notices to the Company shall be sent to its General Counsel, Priscilla Oyelaran, at the headquarters address.

VERIDIAN GRID STORAGE CORP.
By: Leonard Castellanos, Chief Executive Officer

Nadia Farouk
""",
    [
        ("DATE", "December 1, 2024"),
        ("DATE", "January 6, 2025"),
        ("PARTY", "Veridian Grid Storage Corp."),
        ("PARTY", "VERIDIAN GRID STORAGE CORP."),
        ("PARTY", "Nadia Farouk"),
        ("LOCATION", "1900 Lamar Boulevard, Austin, Texas 78701"),
        ("LOCATION", "Travis County, Texas"),
        ("LOCATION", "Texas"),
        ("LOCATION", "Oklahoma"),
        ("LOCATION", "Louisiana"),
        ("PERSON", "Leonard Castellanos"),
        ("PERSON", "Priscilla Oyelaran"),
        ("MONEY", "$285,000"),
        ("MONEY", "$40,000"),
        ("MONEY", "$4.15"),
        ("STATUTE", "Tex. Bus. & Com. Code § 15.50"),
        ("ORGANIZATION", "Solenne Battery Works"),
    ],
)

# Statutes and regulations -----------------------------------------------------------------------

doc(
    "statute-wage-payment",
    "statute",
    """
NEW HALDEN REVISED STATUTES
TITLE 41. LABOR
CHAPTER 41-2. WAGE PAYMENT

§ 41-201. Definitions.
In this chapter:
(1) "Commissioner" means the Commissioner of the New Halden Department of Labor and Industry.
(2) "Employer" means any person, partnership, corporation or association employing one or more persons in New Halden.
(3) "Wages" means all compensation for labor or services, including commissions and accrued vacation pay.

§ 41-202. Payment of wages.
(a) An employer shall pay all wages due at least twice each calendar month on regular paydays designated in advance.
(b) An employer who fails to pay wages when due is liable to the employee for the unpaid wages and an additional penalty of $100 for each day of delay, not to exceed $5,000.

§ 41-203. Enforcement.
(a) The Commissioner may investigate complaints and may bring an action in the Halden County Superior Court.
(b) A civil penalty collected under this section shall be paid into the general fund and reported each year to the New Halden Treasury Board.
(c) Nothing in this chapter limits a claim under the Fair Labor Standards Act of 1938, 29 U.S.C. § 201 et seq.

§ 41-204. Effective date.
This chapter applies to wages earned on or after July 1, 2022.

HISTORY: Enacted by 2021 N.H. Laws, ch. 214, § 3, approved by Governor Evelyn Tran on April 12, 2021; amended by 2023 N.H. Laws, ch. 88, § 1, effective January 1, 2024.

Editor's note: In Delacroix v. Summit Bank of Calder, 97 F.4th 330 (13th Cir. 2024), the court applied § 41-202(b) to unpaid sales commissions owed to a former branch manager.
""",
    [
        ("STATUTE", "NEW HALDEN REVISED STATUTES"),
        ("STATUTE", "§ 41-201"),
        ("STATUTE", "§ 41-202(b)"),
        ("STATUTE", "§ 41-202"),
        ("STATUTE", "§ 41-203"),
        ("STATUTE", "§ 41-204"),
        ("STATUTE", "Fair Labor Standards Act of 1938"),
        ("STATUTE", "29 U.S.C. § 201 et seq."),
        ("STATUTE", "2021 N.H. Laws, ch. 214, § 3"),
        ("STATUTE", "2023 N.H. Laws, ch. 88, § 1"),
        ("ORGANIZATION", "New Halden Department of Labor and Industry"),
        ("ORGANIZATION", "New Halden Treasury Board"),
        ("LOCATION", "New Halden"),
        ("COURT", "Halden County Superior Court"),
        ("MONEY", "$100"),
        ("MONEY", "$5,000"),
        ("DATE", "July 1, 2022"),
        ("DATE", "April 12, 2021"),
        ("DATE", "January 1, 2024"),
        ("PERSON", "Evelyn Tran"),
        ("CASE_CITATION", "Delacroix v. Summit Bank of Calder, 97 F.4th 330 (13th Cir. 2024)"),
    ],
)

doc(
    "regulation-ballast-water",
    "regulation",
    """
DEPARTMENT OF COASTAL RESOURCES
Final Rule: Ballast Water Discharge Reporting
Docket No. DCR-2024-0031

AGENCY: Office of Marine Compliance, Department of Coastal Resources.

ACTION: Final rule.

SUMMARY: The Department of Coastal Resources amends 33 C.F.R. part 151 to require vessels over 300 gross tons that call at ports in the Gulf of Maine or Puget Sound to report ballast water exchanges electronically. The rule implements section 1102 of the National Invasive Species Act of 1996.

DATES: This rule is effective August 1, 2025. Comments on the information collection must be received by June 2, 2025.

FOR FURTHER INFORMATION CONTACT: Lt. Cmdr. Harriet Osgood, Office of Marine Compliance, telephone 202-555-0148.

SUPPLEMENTARY INFORMATION:

I. Background

On March 14, 2024, the Department published a proposed rule and received 212 comments, including comments from the Pacific Maritime Shippers Council and the Atlantic Fisheries Alliance. Several commenters cited Kessler Shipping Co. v. Department of Coastal Resources, 58 F.4th 902 (D.C. Cir. 2023), which vacated an earlier paper-based reporting requirement.

II. Costs

The Department estimates annual compliance costs of $4.6 million across the fleet, or about $1,150 per vessel, and savings of $2.1 million from eliminating the paper forms required by 33 C.F.R. § 151.2060.

III. Regulatory Text

§ 151.2062 Electronic reporting.
(a) The master of each vessel subject to this subpart shall submit the report required by § 151.2060 through the National Ballast Information Clearinghouse no later than six hours before arrival at the first port of call in the United States.
(b) A master who knowingly submits a false report is subject to a civil penalty of up to $38,000 under 16 U.S.C. § 4711(g).
""",
    [
        ("ORGANIZATION", "DEPARTMENT OF COASTAL RESOURCES"),
        ("ORGANIZATION", "Department of Coastal Resources"),
        ("ORGANIZATION", "Office of Marine Compliance"),
        ("ORGANIZATION", "Pacific Maritime Shippers Council"),
        ("ORGANIZATION", "Atlantic Fisheries Alliance"),
        ("ORGANIZATION", "National Ballast Information Clearinghouse"),
        ("STATUTE", "33 C.F.R. part 151"),
        ("STATUTE", "section 1102 of the National Invasive Species Act of 1996"),
        ("STATUTE", "33 C.F.R. § 151.2060"),
        ("STATUTE", "§ 151.2060"),
        ("STATUTE", "§ 151.2062"),
        ("STATUTE", "16 U.S.C. § 4711(g)"),
        ("LOCATION", "Gulf of Maine"),
        ("LOCATION", "Puget Sound"),
        ("LOCATION", "United States"),
        ("DATE", "August 1, 2025"),
        ("DATE", "June 2, 2025"),
        ("DATE", "March 14, 2024"),
        ("PERSON", "Harriet Osgood"),
        ("CASE_CITATION", "Kessler Shipping Co. v. Department of Coastal Resources, 58 F.4th 902 (D.C. Cir. 2023)"),
        ("MONEY", "$4.6 million"),
        ("MONEY", "$1,150"),
        ("MONEY", "$2.1 million"),
        ("MONEY", "$38,000"),
    ],
)

doc(
    "ordinance-short-term-rentals",
    "regulation",
    """
ORDINANCE NO. 2024-17

AN ORDINANCE OF THE CITY OF BRAMBLETON AMENDING CHAPTER 9 OF THE BRAMBLETON MUNICIPAL CODE TO REGULATE SHORT-TERM RENTALS

WHEREAS, the City Council of the City of Brambleton held public hearings on May 6, 2024 and May 20, 2024; and

WHEREAS, the Brambleton Housing Authority reported that 412 dwelling units in the Riverside and Old Mill districts were offered as short-term rentals in 2023; and

WHEREAS, Section 36-112 of the Calder Government Code authorizes cities to license lodging businesses;

NOW, THEREFORE, BE IT ORDAINED BY THE CITY COUNCIL OF THE CITY OF BRAMBLETON:

Section 1. Brambleton Municipal Code § 9-410 is added to read:
"§ 9-410. Short-term rental permits.
(a) No person shall offer a dwelling unit for rent for fewer than 30 consecutive nights without a permit issued by the Department of Planning and Permits.
(b) The annual permit fee is $450. A late renewal fee of $75 applies after January 31 of each year.
(c) A person who violates this section is subject to a fine of $500 for the first violation and $1,000 for each later violation within 12 months."

Section 2. Appeals from permit decisions may be taken to the Hearing Examiner and then to the Brambleton County Circuit Court.

Section 3. This ordinance takes effect on July 1, 2024.

PASSED AND ADOPTED on June 3, 2024 by the following vote: Ayes: Council Members Delgado, Whitfield, Moreau and Tanaka-Ross. Noes: Council Member Haddad.

Mayor Josephine Albright

ATTEST: Curtis Mwangi, City Clerk
""",
    [
        ("STATUTE", "ORDINANCE NO. 2024-17"),
        ("STATUTE", "CHAPTER 9 OF THE BRAMBLETON MUNICIPAL CODE"),
        ("STATUTE", "Section 36-112 of the Calder Government Code"),
        ("STATUTE", "Brambleton Municipal Code § 9-410"),
        ("STATUTE", "§ 9-410"),
        ("ORGANIZATION", "City Council of the City of Brambleton"),
        ("ORGANIZATION", "CITY COUNCIL OF THE CITY OF BRAMBLETON"),
        ("ORGANIZATION", "Brambleton Housing Authority"),
        ("ORGANIZATION", "Department of Planning and Permits"),
        ("LOCATION", "CITY OF BRAMBLETON"),
        ("LOCATION", "Riverside"),
        ("LOCATION", "Old Mill"),
        ("COURT", "Brambleton County Circuit Court"),
        ("DATE", "May 6, 2024"),
        ("DATE", "May 20, 2024"),
        ("DATE", "2023"),
        ("DATE", "January 31"),
        ("DATE", "July 1, 2024"),
        ("DATE", "June 3, 2024"),
        ("MONEY", "$450"),
        ("MONEY", "$75"),
        ("MONEY", "$500"),
        ("MONEY", "$1,000"),
        ("PERSON", "Delgado"),
        ("PERSON", "Whitfield"),
        ("PERSON", "Moreau"),
        ("PERSON", "Tanaka-Ross"),
        ("PERSON", "Haddad"),
        ("PERSON", "Josephine Albright"),
        ("PERSON", "Curtis Mwangi"),
    ],
)

# News --------------------------------------------------------------------------------------------

doc(
    "news-whistleblower-verdict",
    "news",
    """
Jury awards $12.5 million to former Kestrel Aerospace engineer in whistleblower case

By Mariela Sandoval | April 18, 2024

DENVER — A federal jury in Denver on Wednesday ordered Kestrel Aerospace Corp. to pay $12.5 million to Tomasz Wierzbicki, a former test engineer who said he was fired for reporting falsified fatigue-test data on landing-gear components.

The verdict, returned after a two-week trial in the United States District Court for the District of Colorado, includes $9 million in punitive damages. Judge Harold Ng presided.

Wierzbicki, 47, told jurors that in October 2021 he warned his manager, Craig Lundqvist, that a supplier in Wichita, Kansas had reused test results from an earlier batch. He said he was dismissed three weeks later, after he repeated the allegation to the Federal Aviation Administration.

Kestrel argued that Wierzbicki was let go in a company-wide reduction that eliminated 140 jobs. "We respect the jury's service but disagree with the verdict and will appeal to the Tenth Circuit," company spokeswoman Ines Carvalho said in a statement.

Wierzbicki's lawyer, Deborah Stahl of Stahl & Obi LLP, said the award was among the largest under the whistleblower provision of the Sarbanes-Oxley Act, 18 U.S.C. § 1514A. She cited Hale v. Dunmore Systems, Inc., 571 U.S. 429 (2014), in which the Supreme Court extended that protection to employees of private contractors.

Kestrel shares fell 3 percent in New York trading on Thursday. The company reported revenue of $2.7 billion last year.
""",
    [
        ("MONEY", "$12.5 million"),
        ("MONEY", "$9 million"),
        ("MONEY", "$2.7 billion"),
        ("PARTY", "Kestrel Aerospace Corp."),
        ("PARTY", "Kestrel Aerospace"),
        ("PARTY", "Kestrel"),
        ("PARTY", "Tomasz Wierzbicki"),
        ("PARTY", "Wierzbicki"),
        ("PERSON", "Mariela Sandoval"),
        ("PERSON", "Craig Lundqvist"),
        ("PERSON", "Ines Carvalho"),
        ("PERSON", "Deborah Stahl"),
        ("DATE", "April 18, 2024"),
        ("DATE", "October 2021"),
        ("LOCATION", "DENVER"),
        ("LOCATION", "Denver"),
        ("LOCATION", "Wichita, Kansas"),
        ("LOCATION", "New York"),
        ("COURT", "United States District Court for the District of Colorado"),
        ("COURT", "Tenth Circuit"),
        ("COURT", "Supreme Court"),
        ("JUDGE", "Harold Ng"),
        ("ORGANIZATION", "Federal Aviation Administration"),
        ("ORGANIZATION", "Stahl & Obi LLP"),
        ("STATUTE", "Sarbanes-Oxley Act"),
        ("STATUTE", "18 U.S.C. § 1514A"),
        ("CASE_CITATION", "Hale v. Dunmore Systems, Inc., 571 U.S. 429 (2014)"),
    ],
)

doc(
    "news-bank-fine",
    "news",
    """
Regulator fines Harborline Bank €18 million over anti-money-laundering lapses

FRANKFURT, 9 September 2024 — Germany's financial supervisor fined Harborline Bank AG €18 million on Monday for failing to file suspicious-activity reports on transfers linked to shell companies in Cyprus and Latvia between 2019 and 2022.

The Federal Financial Oversight Office said the Düsseldorf-based lender had a backlog of more than 4,000 unreviewed alerts at the end of 2021. The fine was imposed under section 56 of the Money Laundering Act and is the largest the office has levied on a regional bank.

Harborline's chief executive, Friederike Baumgärtner, said the bank had hired 230 compliance staff and spent about €45 million on new monitoring software since the problems were discovered. "We accept the decision and will not appeal," she said.

The bank has also set aside €6.5 million for a possible settlement with the public prosecutor in Cologne, which opened an investigation into two former managers in March 2023. One of them, Jürgen Albescu, is contesting the charges before the Cologne Regional Court, his lawyer Katrin Vos told reporters.

Analysts at Meridale Securities said the penalty would reduce Harborline's 2024 profit by about 5 percent. Shares of the bank closed 1.2 percent lower at €11.40 in Frankfurt.

The case follows a ruling by the Court of Justice of the European Union in Oberhaus v. Finanzkontor, Case C-214/22, EU:C:2023:512, which held that national supervisors may base fines on a bank's total worldwide turnover.
""",
    [
        ("ORGANIZATION", "Harborline Bank AG"),
        ("ORGANIZATION", "Harborline Bank"),
        ("ORGANIZATION", "Harborline"),
        ("ORGANIZATION", "Federal Financial Oversight Office"),
        ("ORGANIZATION", "Meridale Securities"),
        ("MONEY", "€18 million"),
        ("MONEY", "€45 million"),
        ("MONEY", "€6.5 million"),
        ("MONEY", "€11.40"),
        ("LOCATION", "FRANKFURT"),
        ("LOCATION", "Frankfurt"),
        ("LOCATION", "Germany"),
        ("LOCATION", "Cyprus"),
        ("LOCATION", "Latvia"),
        ("LOCATION", "Düsseldorf"),
        ("LOCATION", "Cologne"),
        ("DATE", "9 September 2024"),
        ("DATE", "2019"),
        ("DATE", "2022"),
        ("DATE", "2021"),
        ("DATE", "March 2023"),
        ("DATE", "2024"),
        ("STATUTE", "section 56 of the Money Laundering Act"),
        ("PERSON", "Friederike Baumgärtner"),
        ("PERSON", "Katrin Vos"),
        ("PARTY", "Jürgen Albescu"),
        ("COURT", "Cologne Regional Court"),
        ("COURT", "Court of Justice of the European Union"),
        ("CASE_CITATION", "Oberhaus v. Finanzkontor, Case C-214/22, EU:C:2023:512"),
    ],
)

doc(
    "news-appeals-appointment",
    "news",
    """
Governor names Ashgrove prosecutor to state appeals bench

ASHGROVE, New Halden (Feb. 27, 2025) — Governor Evelyn Tran on Thursday appointed Marcus Ellingsen, the chief deputy prosecutor of Ashgrove County, to the New Halden Court of Appeals, filling the seat left by Judge Beatrix Solano, who retired in January.

Ellingsen, 51, has led the county's major crimes unit since 2017. He previously served as a law clerk to Justice Priya Ramanathan of the Supreme Court of the State of New Halden and practiced at the firm of Wexford Lyle & Grant in Calder City.

The appointment drew praise from the New Halden Bar Association, whose president, Oluwaseun Adeyemi, called Ellingsen "a careful and fair-minded lawyer." The Ashgrove Public Defenders Collective was more critical, noting that Ellingsen argued for the state in State v. Mercer, 2019 NH 144, a decision that narrowed the right to counsel at bail hearings.

Judges on the Court of Appeals earn $198,500 a year. Ellingsen must stand for a retention election in November 2026 under Article VI, section 4 of the New Halden Constitution.

Solano, who joined the court in 2004, wrote more than 900 opinions, including the panel decision in Pruett v. Lindgren Dairy Cooperative, 498 N.Hd.2d 610 (N. Hald. Ct. App. 2021), which required cooperatives to repay $2.3 million in withheld dividends to members.
""",
    [
        ("LOCATION", "ASHGROVE, New Halden"),
        ("LOCATION", "Ashgrove County"),
        ("LOCATION", "Calder City"),
        ("LOCATION", "Ashgrove"),
        ("DATE", "Feb. 27, 2025"),
        ("DATE", "January"),
        ("DATE", "2017"),
        ("DATE", "November 2026"),
        ("DATE", "2004"),
        ("COURT", "New Halden Court of Appeals"),
        ("COURT", "Supreme Court of the State of New Halden"),
        ("COURT", "Court of Appeals"),
        ("JUDGE", "Beatrix Solano"),
        ("JUDGE", "Solano"),
        ("JUDGE", "Priya Ramanathan"),
        ("PERSON", "Evelyn Tran"),
        ("PERSON", "Marcus Ellingsen"),
        ("PERSON", "Ellingsen"),
        ("PERSON", "Oluwaseun Adeyemi"),
        ("ORGANIZATION", "Wexford Lyle & Grant"),
        ("ORGANIZATION", "New Halden Bar Association"),
        ("ORGANIZATION", "Ashgrove Public Defenders Collective"),
        ("CASE_CITATION", "State v. Mercer, 2019 NH 144"),
        ("CASE_CITATION", "Pruett v. Lindgren Dairy Cooperative, 498 N.Hd.2d 610 (N. Hald. Ct. App. 2021)"),
        ("MONEY", "$198,500"),
        ("MONEY", "$2.3 million"),
        ("STATUTE", "Article VI, section 4 of the New Halden Constitution"),
    ],
)


# Building ----------------------------------------------------------------------------------------


def occurrences(text: str, surface: str) -> list[int]:
    """Start offsets of ``surface`` in ``text`` as a whole word (no letter/digit glued on either side,
    and no "," or "." + digit after it, so "$500" is not found inside "$500,000")."""
    found = []
    at = text.find(surface)
    while at != -1:
        end = at + len(surface)
        before_ok = at == 0 or not (surface[0].isalnum() and text[at - 1].isalnum())
        after = text[end : end + 2]
        after_ok = not after or not (
            (surface[-1].isalnum() and after[0].isalnum())
            or (surface[-1].isdigit() and len(after) == 2 and after[0] in ",." and after[1].isdigit())
        )
        if before_ok and after_ok:
            found.append(at)
        at = text.find(surface, at + 1)
    return found


def spans_for(doc_id: str, text: str, labels: list[Label]) -> list[tuple[str, int, int]]:
    """Resolve labels to (type, start, end) spans, longest surface first; raise on any check failing."""
    taken: list[tuple[str, int, int]] = []

    def overlaps(start: int, end: int) -> bool:
        return any(s < end and start < e for _, s, e in taken)

    ordered = sorted(labels, key=lambda label: -len(label[1]))
    for label in ordered:
        etype, surface = label[0], label[1]
        assert etype in TYPES or etype == "O", f"{doc_id}: unknown type {etype}"
        starts = occurrences(text, surface)
        assert starts, f"{doc_id}: {surface!r} not found"
        if len(label) == 3:
            n = label[2]
            assert 1 <= n <= len(starts), f"{doc_id}: {surface!r} has no occurrence {n}"
            chosen = [starts[n - 1]]
            assert not overlaps(chosen[0], chosen[0] + len(surface)), f"{doc_id}: {surface!r} #{n} overlaps"
        else:
            chosen = [s for s in starts if not overlaps(s, s + len(surface))]
            assert chosen, f"{doc_id}: every {surface!r} is inside a longer label"
        for start in chosen:
            taken.append((etype, start, start + len(surface)))
    # Every occurrence of every labelled surface is labelled, inside a label, or marked "O".
    for label in labels:
        for start in occurrences(text, label[1]):
            assert overlaps(start, start + len(label[1])), f"{doc_id}: unlabelled {label[1]!r} at {start}"
    spans = sorted(((t, s, e) for t, s, e in taken if t != "O"), key=lambda span: (span[1], span[2]))
    for (_, _, e1), (_, s2, _) in pairwise(spans):
        assert e1 <= s2, f"{doc_id}: overlapping spans"
    return spans


def build() -> list[dict[str, Any]]:
    """All documents as gold records: {id, kind, text, entities: [{type, start, end, text}]}."""
    records = []
    seen: set[str] = set()
    for doc_id, kind, text, labels in DOCS:
        assert doc_id not in seen, f"duplicate id {doc_id}"
        seen.add(doc_id)
        words = len(text.split())
        assert 150 <= words <= 400, f"{doc_id}: {words} words"
        entities: list[dict[str, Any]] = []
        for etype, start, end in spans_for(doc_id, text, labels):
            surface = text[start:end]
            assert text[start:end] == surface and surface.strip() == surface
            entities.append({"type": etype, "start": start, "end": end, "text": surface})
        records.append({"id": doc_id, "kind": kind, "text": text, "entities": entities})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("gold.jsonl")), help="output file, or -")
    args = parser.parse_args()
    records = build()
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if args.out == "-":
        sys.stdout.write(data)
    else:
        Path(args.out).write_text(data, encoding="utf-8")
    counts = Counter(e["type"] for r in records for e in r["entities"])
    total = sum(counts.values())
    print(f"{len(records)} documents, {total} entities", file=sys.stderr)
    for etype in TYPES:
        print(f"  {etype:<14} {counts[etype]}", file=sys.stderr)


if __name__ == "__main__":
    main()
